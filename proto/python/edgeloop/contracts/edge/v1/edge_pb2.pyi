import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FrameErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_ERROR_REASON_UNSPECIFIED: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_TOO_LARGE: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_INVALID_JPEG: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_BAD_DIMENSIONS: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_INVALID_SENSOR: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_OUT_OF_ORDER: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_MODEL_UNAVAILABLE: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_SPOOL_FULL: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_INVALID_TIMESTAMP: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_INVALID_DEVICE_PREDICTION: _ClassVar[FrameErrorReason]
    FRAME_ERROR_REASON_RATE_LIMITED: _ClassVar[FrameErrorReason]
FRAME_ERROR_REASON_UNSPECIFIED: FrameErrorReason
FRAME_ERROR_REASON_TOO_LARGE: FrameErrorReason
FRAME_ERROR_REASON_INVALID_JPEG: FrameErrorReason
FRAME_ERROR_REASON_BAD_DIMENSIONS: FrameErrorReason
FRAME_ERROR_REASON_INVALID_SENSOR: FrameErrorReason
FRAME_ERROR_REASON_OUT_OF_ORDER: FrameErrorReason
FRAME_ERROR_REASON_MODEL_UNAVAILABLE: FrameErrorReason
FRAME_ERROR_REASON_SPOOL_FULL: FrameErrorReason
FRAME_ERROR_REASON_INVALID_TIMESTAMP: FrameErrorReason
FRAME_ERROR_REASON_INVALID_DEVICE_PREDICTION: FrameErrorReason
FRAME_ERROR_REASON_RATE_LIMITED: FrameErrorReason

class Hello(_message.Message):
    __slots__ = ("device_id", "client_version", "capabilities", "session_id")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    client_version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    def __init__(self, device_id: _Optional[str] = ..., client_version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("deployment", "model_name", "max_frame_bytes", "gateway_id", "model", "sends_recorded", "gateway_time")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SENDS_RECORDED_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_TIME_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    model_name: str
    max_frame_bytes: int
    gateway_id: str
    model: ModelUpdate
    sends_recorded: bool
    gateway_time: _timestamp_pb2.Timestamp
    def __init__(self, deployment: _Optional[str] = ..., model_name: _Optional[str] = ..., max_frame_bytes: _Optional[int] = ..., gateway_id: _Optional[str] = ..., model: _Optional[_Union[ModelUpdate, _Mapping]] = ..., sends_recorded: _Optional[bool] = ..., gateway_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Recorded(_message.Message):
    __slots__ = ("seqs",)
    SEQS_FIELD_NUMBER: _ClassVar[int]
    seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seqs: _Optional[_Iterable[int]] = ...) -> None: ...

class DevicePrediction(_message.Message):
    __slots__ = ("distance_mm", "model_name", "model_version", "inference_ms", "quantized")
    DISTANCE_MM_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    QUANTIZED_FIELD_NUMBER: _ClassVar[int]
    distance_mm: float
    model_name: str
    model_version: str
    inference_ms: float
    quantized: bool
    def __init__(self, distance_mm: _Optional[float] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., inference_ms: _Optional[float] = ..., quantized: _Optional[bool] = ...) -> None: ...

class ModelUpdate(_message.Message):
    __slots__ = ("deployment", "model_name", "model_version", "arm", "size_bytes", "sha256", "quantized")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    QUANTIZED_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    model_name: str
    model_version: str
    arm: str
    size_bytes: int
    sha256: str
    quantized: bool
    def __init__(self, deployment: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., arm: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., quantized: _Optional[bool] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("seq", "captured_at", "jpeg", "sensor_mm", "traceparent", "late", "device_prediction")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    JPEG_FIELD_NUMBER: _ClassVar[int]
    SENSOR_MM_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    seq: int
    captured_at: _timestamp_pb2.Timestamp
    jpeg: bytes
    sensor_mm: float
    traceparent: str
    late: bool
    device_prediction: DevicePrediction
    def __init__(self, seq: _Optional[int] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., jpeg: _Optional[bytes] = ..., sensor_mm: _Optional[float] = ..., traceparent: _Optional[str] = ..., late: _Optional[bool] = ..., device_prediction: _Optional[_Union[DevicePrediction, _Mapping]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("seq", "distance_mm", "model_name", "model_version", "deployment", "arm", "server_latency_ms", "trace_id", "observation_id", "not_recorded")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_MM_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    NOT_RECORDED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    distance_mm: float
    model_name: str
    model_version: str
    deployment: str
    arm: str
    server_latency_ms: float
    trace_id: str
    observation_id: str
    not_recorded: bool
    def __init__(self, seq: _Optional[int] = ..., distance_mm: _Optional[float] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., deployment: _Optional[str] = ..., arm: _Optional[str] = ..., server_latency_ms: _Optional[float] = ..., trace_id: _Optional[str] = ..., observation_id: _Optional[str] = ..., not_recorded: _Optional[bool] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("seq", "reason", "code", "message", "recorded")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    reason: FrameErrorReason
    code: int
    message: str
    recorded: bool
    def __init__(self, seq: _Optional[int] = ..., reason: _Optional[_Union[FrameErrorReason, str]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., recorded: _Optional[bool] = ...) -> None: ...
