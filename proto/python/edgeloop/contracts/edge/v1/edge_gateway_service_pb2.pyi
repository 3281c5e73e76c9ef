from edgeloop.contracts.edge.v1 import edge_pb2 as _edge_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DownloadModelRequest(_message.Message):
    __slots__ = ("model_name", "model_version", "offset", "quantized")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    QUANTIZED_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    offset: int
    quantized: bool
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., offset: _Optional[int] = ..., quantized: _Optional[bool] = ...) -> None: ...

class DownloadModelResponse(_message.Message):
    __slots__ = ("size_bytes", "sha256", "offset", "data")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    sha256: str
    offset: int
    data: bytes
    def __init__(self, size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("hello", "frame")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    hello: _edge_pb2.Hello
    frame: _edge_pb2.Frame
    def __init__(self, hello: _Optional[_Union[_edge_pb2.Hello, _Mapping]] = ..., frame: _Optional[_Union[_edge_pb2.Frame, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("welcome", "prediction", "error", "model_update", "recorded")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_UPDATE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    welcome: _edge_pb2.Welcome
    prediction: _edge_pb2.Prediction
    error: _edge_pb2.FrameError
    model_update: _edge_pb2.ModelUpdate
    recorded: _edge_pb2.Recorded
    def __init__(self, welcome: _Optional[_Union[_edge_pb2.Welcome, _Mapping]] = ..., prediction: _Optional[_Union[_edge_pb2.Prediction, _Mapping]] = ..., error: _Optional[_Union[_edge_pb2.FrameError, _Mapping]] = ..., model_update: _Optional[_Union[_edge_pb2.ModelUpdate, _Mapping]] = ..., recorded: _Optional[_Union[_edge_pb2.Recorded, _Mapping]] = ...) -> None: ...
