import datetime

from edgeloop.contracts.features.v1 import dead_letter_pb2 as _dead_letter_pb2
from edgeloop.contracts.features.v1 import observation_pb2 as _observation_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GatewayRecordingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GATEWAY_RECORDING_STATE_UNSPECIFIED: _ClassVar[GatewayRecordingState]
    GATEWAY_RECORDING_STATE_RECORDING: _ClassVar[GatewayRecordingState]
    GATEWAY_RECORDING_STATE_NOT_RECORDING: _ClassVar[GatewayRecordingState]
    GATEWAY_RECORDING_STATE_DISK_FULL: _ClassVar[GatewayRecordingState]
    GATEWAY_RECORDING_STATE_FEATURES_FAILING: _ClassVar[GatewayRecordingState]
    GATEWAY_RECORDING_STATE_STOPPED: _ClassVar[GatewayRecordingState]
GATEWAY_RECORDING_STATE_UNSPECIFIED: GatewayRecordingState
GATEWAY_RECORDING_STATE_RECORDING: GatewayRecordingState
GATEWAY_RECORDING_STATE_NOT_RECORDING: GatewayRecordingState
GATEWAY_RECORDING_STATE_DISK_FULL: GatewayRecordingState
GATEWAY_RECORDING_STATE_FEATURES_FAILING: GatewayRecordingState
GATEWAY_RECORDING_STATE_STOPPED: GatewayRecordingState

class IngestRequest(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[_observation_pb2.Observation]
    def __init__(self, observations: _Optional[_Iterable[_Union[_observation_pb2.Observation, _Mapping]]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("observation_id", "reason", "dead_letter_id")
    OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_ID_FIELD_NUMBER: _ClassVar[int]
    observation_id: str
    reason: str
    dead_letter_id: int
    def __init__(self, observation_id: _Optional[str] = ..., reason: _Optional[str] = ..., dead_letter_id: _Optional[int] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("stored", "duplicates", "rejected")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[Rejection]
    def __init__(self, stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ...) -> None: ...

class ListObservationsRequest(_message.Message):
    __slots__ = ("deployments", "data_groups", "start_time", "end_time", "labelled_only", "limit", "include_jpeg", "observation_ids", "device_id", "model_name", "model_version", "newest_first", "spread")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_GROUPS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LABELLED_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_JPEG_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_IDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedScalarFieldContainer[str]
    data_groups: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    labelled_only: bool
    limit: int
    include_jpeg: bool
    observation_ids: _containers.RepeatedScalarFieldContainer[str]
    device_id: str
    model_name: str
    model_version: str
    newest_first: bool
    spread: bool
    def __init__(self, deployments: _Optional[_Iterable[str]] = ..., data_groups: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labelled_only: _Optional[bool] = ..., limit: _Optional[int] = ..., include_jpeg: _Optional[bool] = ..., observation_ids: _Optional[_Iterable[str]] = ..., device_id: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., newest_first: _Optional[bool] = ..., spread: _Optional[bool] = ...) -> None: ...

class ListObservationsResponse(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[_observation_pb2.Observation]
    def __init__(self, observations: _Optional[_Iterable[_Union[_observation_pb2.Observation, _Mapping]]] = ...) -> None: ...

class GetWindowStatsRequest(_message.Message):
    __slots__ = ("deployment", "start_time", "end_time", "histogram_bins", "bucket_seconds")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_BINS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    histogram_bins: int
    bucket_seconds: int
    def __init__(self, deployment: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., histogram_bins: _Optional[int] = ..., bucket_seconds: _Optional[int] = ...) -> None: ...

class Histogram(_message.Message):
    __slots__ = ("edges", "counts")
    EDGES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, edges: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class StatSummary(_message.Message):
    __slots__ = ("name", "count", "mean", "min", "max", "stddev", "histogram")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    STDDEV_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    mean: float
    min: float
    max: float
    stddev: float
    histogram: Histogram
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ..., mean: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., stddev: _Optional[float] = ..., histogram: _Optional[_Union[Histogram, _Mapping]] = ...) -> None: ...

class Bucket(_message.Message):
    __slots__ = ("start", "count", "means")
    class MeansEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    START_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEANS_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    count: int
    means: _containers.ScalarMap[str, float]
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ..., means: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GetWindowStatsResponse(_message.Message):
    __slots__ = ("deployment", "start_time", "end_time", "observation_count", "labelled_count", "stats", "buckets")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    LABELLED_COUNT_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    observation_count: int
    labelled_count: int
    stats: _containers.RepeatedCompositeFieldContainer[StatSummary]
    buckets: _containers.RepeatedCompositeFieldContainer[Bucket]
    def __init__(self, deployment: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., observation_count: _Optional[int] = ..., labelled_count: _Optional[int] = ..., stats: _Optional[_Iterable[_Union[StatSummary, _Mapping]]] = ..., buckets: _Optional[_Iterable[_Union[Bucket, _Mapping]]] = ...) -> None: ...

class ListDriftEventsRequest(_message.Message):
    __slots__ = ("deployment", "open_only", "limit")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    open_only: bool
    limit: int
    def __init__(self, deployment: _Optional[str] = ..., open_only: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListDriftEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_observation_pb2.DriftEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_observation_pb2.DriftEvent, _Mapping]]] = ...) -> None: ...

class ListRuleStatesRequest(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    def __init__(self, deployment: _Optional[str] = ...) -> None: ...

class ListRuleStatesResponse(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[_observation_pb2.RuleState]
    def __init__(self, states: _Optional[_Iterable[_Union[_observation_pb2.RuleState, _Mapping]]] = ...) -> None: ...

class SummarizeTrafficRequest(_message.Message):
    __slots__ = ("deployments", "start_time", "end_time")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, deployments: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SummarizeTrafficResponse(_message.Message):
    __slots__ = ("devices", "arms")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceTraffic]
    arms: _containers.RepeatedCompositeFieldContainer[ArmTraffic]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceTraffic, _Mapping]]] = ..., arms: _Optional[_Iterable[_Union[ArmTraffic, _Mapping]]] = ...) -> None: ...

class DeviceTraffic(_message.Message):
    __slots__ = ("device_id", "frames", "last_frame", "labelled", "mae_mm", "model_version", "source", "quantized")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    LAST_FRAME_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    MAE_MM_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    QUANTIZED_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    frames: int
    last_frame: _timestamp_pb2.Timestamp
    labelled: int
    mae_mm: float
    model_version: str
    source: _observation_pb2.PredictionSource
    quantized: bool
    def __init__(self, device_id: _Optional[str] = ..., frames: _Optional[int] = ..., last_frame: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labelled: _Optional[int] = ..., mae_mm: _Optional[float] = ..., model_version: _Optional[str] = ..., source: _Optional[_Union[_observation_pb2.PredictionSource, str]] = ..., quantized: _Optional[bool] = ...) -> None: ...

class ArmTraffic(_message.Message):
    __slots__ = ("arm", "model_version", "answered", "shadowed", "labelled", "mae_mm")
    ARM_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    SHADOWED_FIELD_NUMBER: _ClassVar[int]
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    MAE_MM_FIELD_NUMBER: _ClassVar[int]
    arm: str
    model_version: str
    answered: int
    shadowed: int
    labelled: int
    mae_mm: float
    def __init__(self, arm: _Optional[str] = ..., model_version: _Optional[str] = ..., answered: _Optional[int] = ..., shadowed: _Optional[int] = ..., labelled: _Optional[int] = ..., mae_mm: _Optional[float] = ...) -> None: ...

class GatewaySample(_message.Message):
    __slots__ = ("gateway_id", "sampled_at", "backlog_bytes", "max_bytes", "recording", "robots_streaming", "streams_open", "frames_per_s", "not_recorded_per_s", "disk_free_bytes", "disk_total_bytes", "robots_clock_off", "worst_clock_offset_s")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    ROBOTS_STREAMING_FIELD_NUMBER: _ClassVar[int]
    STREAMS_OPEN_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_S_FIELD_NUMBER: _ClassVar[int]
    NOT_RECORDED_PER_S_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    ROBOTS_CLOCK_OFF_FIELD_NUMBER: _ClassVar[int]
    WORST_CLOCK_OFFSET_S_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    sampled_at: _timestamp_pb2.Timestamp
    backlog_bytes: int
    max_bytes: int
    recording: GatewayRecordingState
    robots_streaming: int
    streams_open: int
    frames_per_s: float
    not_recorded_per_s: float
    disk_free_bytes: int
    disk_total_bytes: int
    robots_clock_off: int
    worst_clock_offset_s: float
    def __init__(self, gateway_id: _Optional[str] = ..., sampled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., backlog_bytes: _Optional[int] = ..., max_bytes: _Optional[int] = ..., recording: _Optional[_Union[GatewayRecordingState, str]] = ..., robots_streaming: _Optional[int] = ..., streams_open: _Optional[int] = ..., frames_per_s: _Optional[float] = ..., not_recorded_per_s: _Optional[float] = ..., disk_free_bytes: _Optional[int] = ..., disk_total_bytes: _Optional[int] = ..., robots_clock_off: _Optional[int] = ..., worst_clock_offset_s: _Optional[float] = ...) -> None: ...

class RecordGatewaySamplesRequest(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[GatewaySample]
    def __init__(self, samples: _Optional[_Iterable[_Union[GatewaySample, _Mapping]]] = ...) -> None: ...

class RecordGatewaySamplesResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    def __init__(self, stored: _Optional[int] = ...) -> None: ...

class ListGatewaySamplesRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "gateway_ids", "max_per_gateway")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_GATEWAY_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    gateway_ids: _containers.RepeatedScalarFieldContainer[str]
    max_per_gateway: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gateway_ids: _Optional[_Iterable[str]] = ..., max_per_gateway: _Optional[int] = ...) -> None: ...

class ListGatewaySamplesResponse(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[GatewaySample]
    def __init__(self, samples: _Optional[_Iterable[_Union[GatewaySample, _Mapping]]] = ...) -> None: ...
