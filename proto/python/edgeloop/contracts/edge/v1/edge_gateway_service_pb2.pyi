from edgeloop.contracts.edge.v1 import edge_pb2 as _edge_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamRequest(_message.Message):
    __slots__ = ("hello", "frame")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    hello: _edge_pb2.Hello
    frame: _edge_pb2.Frame
    def __init__(self, hello: _Optional[_Union[_edge_pb2.Hello, _Mapping]] = ..., frame: _Optional[_Union[_edge_pb2.Frame, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("welcome", "prediction", "error")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    welcome: _edge_pb2.Welcome
    prediction: _edge_pb2.Prediction
    error: _edge_pb2.FrameError
    def __init__(self, welcome: _Optional[_Union[_edge_pb2.Welcome, _Mapping]] = ..., prediction: _Optional[_Union[_edge_pb2.Prediction, _Mapping]] = ..., error: _Optional[_Union[_edge_pb2.FrameError, _Mapping]] = ...) -> None: ...
