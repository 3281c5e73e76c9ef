import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictionSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREDICTION_SOURCE_UNSPECIFIED: _ClassVar[PredictionSource]
    PREDICTION_SOURCE_SERVER: _ClassVar[PredictionSource]
    PREDICTION_SOURCE_DEVICE: _ClassVar[PredictionSource]

class DriftKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIFT_KIND_UNSPECIFIED: _ClassVar[DriftKind]
    DRIFT_KIND_COVARIATE: _ClassVar[DriftKind]
    DRIFT_KIND_LABEL: _ClassVar[DriftKind]
    DRIFT_KIND_CONCEPT: _ClassVar[DriftKind]

class DriftEventState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIFT_EVENT_STATE_UNSPECIFIED: _ClassVar[DriftEventState]
    DRIFT_EVENT_STATE_OPEN: _ClassVar[DriftEventState]
    DRIFT_EVENT_STATE_RESOLVED: _ClassVar[DriftEventState]
    DRIFT_EVENT_STATE_SUPERSEDED: _ClassVar[DriftEventState]
PREDICTION_SOURCE_UNSPECIFIED: PredictionSource
PREDICTION_SOURCE_SERVER: PredictionSource
PREDICTION_SOURCE_DEVICE: PredictionSource
DRIFT_KIND_UNSPECIFIED: DriftKind
DRIFT_KIND_COVARIATE: DriftKind
DRIFT_KIND_LABEL: DriftKind
DRIFT_KIND_CONCEPT: DriftKind
DRIFT_EVENT_STATE_UNSPECIFIED: DriftEventState
DRIFT_EVENT_STATE_OPEN: DriftEventState
DRIFT_EVENT_STATE_RESOLVED: DriftEventState
DRIFT_EVENT_STATE_SUPERSEDED: DriftEventState

class ImageStats(_message.Message):
    __slots__ = ("mean_r", "mean_g", "mean_b", "hue", "saturation", "brightness", "contrast", "sharpness", "edge_density", "keypoints", "entropy")
    MEAN_R_FIELD_NUMBER: _ClassVar[int]
    MEAN_G_FIELD_NUMBER: _ClassVar[int]
    MEAN_B_FIELD_NUMBER: _ClassVar[int]
    HUE_FIELD_NUMBER: _ClassVar[int]
    SATURATION_FIELD_NUMBER: _ClassVar[int]
    BRIGHTNESS_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    SHARPNESS_FIELD_NUMBER: _ClassVar[int]
    EDGE_DENSITY_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    mean_r: float
    mean_g: float
    mean_b: float
    hue: float
    saturation: float
    brightness: float
    contrast: float
    sharpness: float
    edge_density: float
    keypoints: int
    entropy: float
    def __init__(self, mean_r: _Optional[float] = ..., mean_g: _Optional[float] = ..., mean_b: _Optional[float] = ..., hue: _Optional[float] = ..., saturation: _Optional[float] = ..., brightness: _Optional[float] = ..., contrast: _Optional[float] = ..., sharpness: _Optional[float] = ..., edge_density: _Optional[float] = ..., keypoints: _Optional[int] = ..., entropy: _Optional[float] = ...) -> None: ...

class ArmPrediction(_message.Message):
    __slots__ = ("arm", "model_name", "model_version", "prediction_mm")
    ARM_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_MM_FIELD_NUMBER: _ClassVar[int]
    arm: str
    model_name: str
    model_version: str
    prediction_mm: float
    def __init__(self, arm: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., prediction_mm: _Optional[float] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("observation_id", "time", "received_at", "device_id", "session_id", "seq", "deployment", "data_group", "model_name", "model_version", "arm", "prediction_mm", "sensor_mm", "error_mm", "latency_ms", "trace_id", "traceparent", "late", "jpeg", "image_key", "stats", "shadow_predictions", "prediction_source", "server_shadow", "device_quantized")
    OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    DATA_GROUP_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_MM_FIELD_NUMBER: _ClassVar[int]
    SENSOR_MM_FIELD_NUMBER: _ClassVar[int]
    ERROR_MM_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    JPEG_FIELD_NUMBER: _ClassVar[int]
    IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SERVER_SHADOW_FIELD_NUMBER: _ClassVar[int]
    DEVICE_QUANTIZED_FIELD_NUMBER: _ClassVar[int]
    observation_id: str
    time: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    device_id: str
    session_id: str
    seq: int
    deployment: str
    data_group: str
    model_name: str
    model_version: str
    arm: str
    prediction_mm: float
    sensor_mm: float
    error_mm: float
    latency_ms: float
    trace_id: str
    traceparent: str
    late: bool
    jpeg: bytes
    image_key: str
    stats: ImageStats
    shadow_predictions: _containers.RepeatedCompositeFieldContainer[ArmPrediction]
    prediction_source: PredictionSource
    server_shadow: ArmPrediction
    device_quantized: bool
    def __init__(self, observation_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device_id: _Optional[str] = ..., session_id: _Optional[str] = ..., seq: _Optional[int] = ..., deployment: _Optional[str] = ..., data_group: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., arm: _Optional[str] = ..., prediction_mm: _Optional[float] = ..., sensor_mm: _Optional[float] = ..., error_mm: _Optional[float] = ..., latency_ms: _Optional[float] = ..., trace_id: _Optional[str] = ..., traceparent: _Optional[str] = ..., late: _Optional[bool] = ..., jpeg: _Optional[bytes] = ..., image_key: _Optional[str] = ..., stats: _Optional[_Union[ImageStats, _Mapping]] = ..., shadow_predictions: _Optional[_Iterable[_Union[ArmPrediction, _Mapping]]] = ..., prediction_source: _Optional[_Union[PredictionSource, str]] = ..., server_shadow: _Optional[_Union[ArmPrediction, _Mapping]] = ..., device_quantized: _Optional[bool] = ...) -> None: ...

class DriftEvent(_message.Message):
    __slots__ = ("event_id", "rule", "kind", "deployment", "model_name", "model_version", "state", "values", "threshold", "window_start", "window_end", "fired_at", "resolved_at", "sweep_id", "sweep_trace_id", "note")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    FIRED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    SWEEP_TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    rule: str
    kind: DriftKind
    deployment: str
    model_name: str
    model_version: str
    state: DriftEventState
    values: _containers.ScalarMap[str, float]
    threshold: str
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    fired_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    sweep_id: str
    sweep_trace_id: str
    note: str
    def __init__(self, event_id: _Optional[str] = ..., rule: _Optional[str] = ..., kind: _Optional[_Union[DriftKind, str]] = ..., deployment: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., state: _Optional[_Union[DriftEventState, str]] = ..., values: _Optional[_Mapping[str, float]] = ..., threshold: _Optional[str] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sweep_id: _Optional[str] = ..., sweep_trace_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RuleState(_message.Message):
    __slots__ = ("rule", "kind", "deployment", "value", "threshold", "samples", "status", "evaluated_at")
    RULE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    rule: str
    kind: DriftKind
    deployment: str
    value: float
    threshold: str
    samples: int
    status: str
    evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, rule: _Optional[str] = ..., kind: _Optional[_Union[DriftKind, str]] = ..., deployment: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[str] = ..., samples: _Optional[int] = ..., status: _Optional[str] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
