from edgeloop.contracts.registry.v1 import deployment_pb2 as _deployment_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2 as _sweep_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartSweepRequest(_message.Message):
    __slots__ = ("model_name", "experiment", "trigger", "data", "search_space", "num_trials", "max_concurrent_trials", "from_sweep", "deployment", "seed", "promote", "warm_start", "request_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SPACE_FIELD_NUMBER: _ClassVar[int]
    NUM_TRIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_TRIALS_FIELD_NUMBER: _ClassVar[int]
    FROM_SWEEP_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    WARM_START_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    experiment: str
    trigger: str
    data: _sweep_pb2.DataSelection
    search_space: _sweep_pb2.SearchSpace
    num_trials: int
    max_concurrent_trials: int
    from_sweep: str
    deployment: str
    seed: int
    promote: bool
    warm_start: _deployment_pb2.VersionSelector
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., experiment: _Optional[str] = ..., trigger: _Optional[str] = ..., data: _Optional[_Union[_sweep_pb2.DataSelection, _Mapping]] = ..., search_space: _Optional[_Union[_sweep_pb2.SearchSpace, _Mapping]] = ..., num_trials: _Optional[int] = ..., max_concurrent_trials: _Optional[int] = ..., from_sweep: _Optional[str] = ..., deployment: _Optional[str] = ..., seed: _Optional[int] = ..., promote: _Optional[bool] = ..., warm_start: _Optional[_Union[_deployment_pb2.VersionSelector, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartSweepResponse(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: _sweep_pb2.Sweep
    def __init__(self, sweep: _Optional[_Union[_sweep_pb2.Sweep, _Mapping]] = ...) -> None: ...

class GetSweepRequest(_message.Message):
    __slots__ = ("sweep_id",)
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    def __init__(self, sweep_id: _Optional[str] = ...) -> None: ...

class GetSweepResponse(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: _sweep_pb2.Sweep
    def __init__(self, sweep: _Optional[_Union[_sweep_pb2.Sweep, _Mapping]] = ...) -> None: ...

class WatchSweepRequest(_message.Message):
    __slots__ = ("sweep_id",)
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    def __init__(self, sweep_id: _Optional[str] = ...) -> None: ...

class WatchSweepResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _sweep_pb2.SweepEvent
    def __init__(self, event: _Optional[_Union[_sweep_pb2.SweepEvent, _Mapping]] = ...) -> None: ...

class ListSweepsRequest(_message.Message):
    __slots__ = ("model_name", "limit", "observation_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    limit: int
    observation_id: str
    def __init__(self, model_name: _Optional[str] = ..., limit: _Optional[int] = ..., observation_id: _Optional[str] = ...) -> None: ...

class ListSweepsResponse(_message.Message):
    __slots__ = ("sweeps",)
    SWEEPS_FIELD_NUMBER: _ClassVar[int]
    sweeps: _containers.RepeatedCompositeFieldContainer[_sweep_pb2.Sweep]
    def __init__(self, sweeps: _Optional[_Iterable[_Union[_sweep_pb2.Sweep, _Mapping]]] = ...) -> None: ...

class CancelSweepRequest(_message.Message):
    __slots__ = ("sweep_id",)
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    sweep_id: str
    def __init__(self, sweep_id: _Optional[str] = ...) -> None: ...

class CancelSweepResponse(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: _sweep_pb2.Sweep
    def __init__(self, sweep: _Optional[_Union[_sweep_pb2.Sweep, _Mapping]] = ...) -> None: ...
