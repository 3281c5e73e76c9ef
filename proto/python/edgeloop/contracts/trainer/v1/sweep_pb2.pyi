import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SweepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SWEEP_STATE_UNSPECIFIED: _ClassVar[SweepState]
    SWEEP_STATE_QUEUED: _ClassVar[SweepState]
    SWEEP_STATE_RUNNING: _ClassVar[SweepState]
    SWEEP_STATE_SUCCEEDED: _ClassVar[SweepState]
    SWEEP_STATE_FAILED: _ClassVar[SweepState]
    SWEEP_STATE_CANCELLED: _ClassVar[SweepState]

class SweepEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SWEEP_EVENT_TYPE_UNSPECIFIED: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_STATE_CHANGED: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_SNAPSHOT_BUILT: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_TRIAL_STARTED: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_EPOCH: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_TRIAL_FINISHED: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_BEST_SO_FAR: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_VERSION_REGISTERED: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_PROMOTION: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_WAITING: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_TRIAL_PAUSED: _ClassVar[SweepEventType]
    SWEEP_EVENT_TYPE_TRIAL_RESUMED: _ClassVar[SweepEventType]
SWEEP_STATE_UNSPECIFIED: SweepState
SWEEP_STATE_QUEUED: SweepState
SWEEP_STATE_RUNNING: SweepState
SWEEP_STATE_SUCCEEDED: SweepState
SWEEP_STATE_FAILED: SweepState
SWEEP_STATE_CANCELLED: SweepState
SWEEP_EVENT_TYPE_UNSPECIFIED: SweepEventType
SWEEP_EVENT_TYPE_STATE_CHANGED: SweepEventType
SWEEP_EVENT_TYPE_SNAPSHOT_BUILT: SweepEventType
SWEEP_EVENT_TYPE_TRIAL_STARTED: SweepEventType
SWEEP_EVENT_TYPE_EPOCH: SweepEventType
SWEEP_EVENT_TYPE_TRIAL_FINISHED: SweepEventType
SWEEP_EVENT_TYPE_BEST_SO_FAR: SweepEventType
SWEEP_EVENT_TYPE_VERSION_REGISTERED: SweepEventType
SWEEP_EVENT_TYPE_PROMOTION: SweepEventType
SWEEP_EVENT_TYPE_WAITING: SweepEventType
SWEEP_EVENT_TYPE_TRIAL_PAUSED: SweepEventType
SWEEP_EVENT_TYPE_TRIAL_RESUMED: SweepEventType

class DataSelection(_message.Message):
    __slots__ = ("deployments", "data_groups", "start_time", "end_time", "max_observations", "balance_deployments", "include_snapshots_of")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_GROUPS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SNAPSHOTS_OF_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedScalarFieldContainer[str]
    data_groups: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    max_observations: int
    balance_deployments: bool
    include_snapshots_of: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deployments: _Optional[_Iterable[str]] = ..., data_groups: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_observations: _Optional[int] = ..., balance_deployments: _Optional[bool] = ..., include_snapshots_of: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchSpace(_message.Message):
    __slots__ = ("learning_rates", "batch_sizes", "dropouts", "filters", "epochs", "architectures", "dense_units")
    LEARNING_RATES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    DROPOUTS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURES_FIELD_NUMBER: _ClassVar[int]
    DENSE_UNITS_FIELD_NUMBER: _ClassVar[int]
    learning_rates: _containers.RepeatedScalarFieldContainer[float]
    batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    dropouts: _containers.RepeatedScalarFieldContainer[float]
    filters: _containers.RepeatedScalarFieldContainer[int]
    epochs: _containers.RepeatedScalarFieldContainer[int]
    architectures: _containers.RepeatedScalarFieldContainer[str]
    dense_units: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, learning_rates: _Optional[_Iterable[float]] = ..., batch_sizes: _Optional[_Iterable[int]] = ..., dropouts: _Optional[_Iterable[float]] = ..., filters: _Optional[_Iterable[int]] = ..., epochs: _Optional[_Iterable[int]] = ..., architectures: _Optional[_Iterable[str]] = ..., dense_units: _Optional[_Iterable[int]] = ...) -> None: ...

class DatasetSnapshot(_message.Message):
    __slots__ = ("snapshot_id", "manifest_key", "content_hash", "observation_count", "train_count", "validation_count", "holdout_count", "deployments", "start_time", "end_time", "label_min_mm", "label_max_mm")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LABEL_MIN_MM_FIELD_NUMBER: _ClassVar[int]
    LABEL_MAX_MM_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    manifest_key: str
    content_hash: str
    observation_count: int
    train_count: int
    validation_count: int
    holdout_count: int
    deployments: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    label_min_mm: float
    label_max_mm: float
    def __init__(self, snapshot_id: _Optional[str] = ..., manifest_key: _Optional[str] = ..., content_hash: _Optional[str] = ..., observation_count: _Optional[int] = ..., train_count: _Optional[int] = ..., validation_count: _Optional[int] = ..., holdout_count: _Optional[int] = ..., deployments: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label_min_mm: _Optional[float] = ..., label_max_mm: _Optional[float] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("trial_id", "state", "params", "mlflow_run_id", "epochs_done", "best_val_mae_mm")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_DONE_FIELD_NUMBER: _ClassVar[int]
    BEST_VAL_MAE_MM_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    state: str
    params: _containers.ScalarMap[str, str]
    mlflow_run_id: str
    epochs_done: int
    best_val_mae_mm: float
    def __init__(self, trial_id: _Optional[str] = ..., state: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., mlflow_run_id: _Optional[str] = ..., epochs_done: _Optional[int] = ..., best_val_mae_mm: _Optional[float] = ...) -> None: ...

class Sweep(_message.Message):
    __slots__ = ("sweep_id", "model_name", "experiment", "trigger", "state", "data", "search_space", "num_trials", "from_sweep", "dataset", "trials", "best_trial_id", "mlflow_experiment_id", "mlflow_parent_run_id", "holdout_mae_mm", "model_version", "promoted", "promotion_note", "error", "created_at", "started_at", "finished_at", "trace_id", "deployment", "max_concurrent_trials", "warm_start_version")
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SPACE_FIELD_NUMBER: _ClassVar[int]
    NUM_TRIALS_FIELD_NUMBER: _ClassVar[int]
    FROM_SWEEP_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    BEST_TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_MAE_MM_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_NOTE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_TRIALS_FIELD_NUMBER: _ClassVar[int]
    WARM_START_VERSION_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    model_name: str
    experiment: str
    trigger: str
    state: SweepState
    data: DataSelection
    search_space: SearchSpace
    num_trials: int
    from_sweep: str
    dataset: DatasetSnapshot
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    best_trial_id: str
    mlflow_experiment_id: str
    mlflow_parent_run_id: str
    holdout_mae_mm: float
    model_version: str
    promoted: bool
    promotion_note: str
    error: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    trace_id: str
    deployment: str
    max_concurrent_trials: int
    warm_start_version: str
    def __init__(self, sweep_id: _Optional[str] = ..., model_name: _Optional[str] = ..., experiment: _Optional[str] = ..., trigger: _Optional[str] = ..., state: _Optional[_Union[SweepState, str]] = ..., data: _Optional[_Union[DataSelection, _Mapping]] = ..., search_space: _Optional[_Union[SearchSpace, _Mapping]] = ..., num_trials: _Optional[int] = ..., from_sweep: _Optional[str] = ..., dataset: _Optional[_Union[DatasetSnapshot, _Mapping]] = ..., trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ..., best_trial_id: _Optional[str] = ..., mlflow_experiment_id: _Optional[str] = ..., mlflow_parent_run_id: _Optional[str] = ..., holdout_mae_mm: _Optional[float] = ..., model_version: _Optional[str] = ..., promoted: _Optional[bool] = ..., promotion_note: _Optional[str] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., deployment: _Optional[str] = ..., max_concurrent_trials: _Optional[int] = ..., warm_start_version: _Optional[str] = ...) -> None: ...

class SweepEvent(_message.Message):
    __slots__ = ("sweep_id", "type", "time", "trial_id", "epoch", "metrics", "message", "state")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    type: SweepEventType
    time: _timestamp_pb2.Timestamp
    trial_id: str
    epoch: int
    metrics: _containers.ScalarMap[str, float]
    message: str
    state: SweepState
    def __init__(self, sweep_id: _Optional[str] = ..., type: _Optional[_Union[SweepEventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trial_id: _Optional[str] = ..., epoch: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., message: _Optional[str] = ..., state: _Optional[_Union[SweepState, str]] = ...) -> None: ...
