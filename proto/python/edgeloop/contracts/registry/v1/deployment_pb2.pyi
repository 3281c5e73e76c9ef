import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STRATEGY_UNSPECIFIED: _ClassVar[Strategy]
    STRATEGY_DIRECT: _ClassVar[Strategy]
    STRATEGY_SHADOW: _ClassVar[Strategy]
    STRATEGY_CANARY: _ClassVar[Strategy]
    STRATEGY_AB: _ClassVar[Strategy]
    STRATEGY_BANDIT: _ClassVar[Strategy]
STRATEGY_UNSPECIFIED: Strategy
STRATEGY_DIRECT: Strategy
STRATEGY_SHADOW: Strategy
STRATEGY_CANARY: Strategy
STRATEGY_AB: Strategy
STRATEGY_BANDIT: Strategy

class VersionSelector(_message.Message):
    __slots__ = ("version", "alias", "latest")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    version: str
    alias: str
    latest: bool
    def __init__(self, version: _Optional[str] = ..., alias: _Optional[str] = ..., latest: _Optional[bool] = ...) -> None: ...

class Arm(_message.Message):
    __slots__ = ("name", "selector")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    selector: VersionSelector
    def __init__(self, name: _Optional[str] = ..., selector: _Optional[_Union[VersionSelector, _Mapping]] = ...) -> None: ...

class ResolvedArm(_message.Message):
    __slots__ = ("arm", "model_name", "model_version", "model_path", "version_label")
    ARM_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    arm: str
    model_name: str
    model_version: str
    model_path: str
    version_label: str
    def __init__(self, arm: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., model_path: _Optional[str] = ..., version_label: _Optional[str] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "model_name", "selector", "data_group", "strategy", "challenger", "canary_fraction", "arms", "active", "description", "revision", "updated_at", "resolved", "device_shadow")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    DATA_GROUP_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_FIELD_NUMBER: _ClassVar[int]
    CANARY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_SHADOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    model_name: str
    selector: VersionSelector
    data_group: str
    strategy: Strategy
    challenger: VersionSelector
    canary_fraction: float
    arms: _containers.RepeatedCompositeFieldContainer[Arm]
    active: bool
    description: str
    revision: int
    updated_at: _timestamp_pb2.Timestamp
    resolved: _containers.RepeatedCompositeFieldContainer[ResolvedArm]
    device_shadow: bool
    def __init__(self, name: _Optional[str] = ..., model_name: _Optional[str] = ..., selector: _Optional[_Union[VersionSelector, _Mapping]] = ..., data_group: _Optional[str] = ..., strategy: _Optional[_Union[Strategy, str]] = ..., challenger: _Optional[_Union[VersionSelector, _Mapping]] = ..., canary_fraction: _Optional[float] = ..., arms: _Optional[_Iterable[_Union[Arm, _Mapping]]] = ..., active: _Optional[bool] = ..., description: _Optional[str] = ..., revision: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved: _Optional[_Iterable[_Union[ResolvedArm, _Mapping]]] = ..., device_shadow: _Optional[bool] = ...) -> None: ...

class DeviceAssignment(_message.Message):
    __slots__ = ("device_id", "deployment")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    deployment: str
    def __init__(self, device_id: _Optional[str] = ..., deployment: _Optional[str] = ...) -> None: ...

class ChangeRecord(_message.Message):
    __slots__ = ("change_id", "time", "actor", "subject", "action", "detail")
    CHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    change_id: int
    time: _timestamp_pb2.Timestamp
    actor: str
    subject: str
    action: str
    detail: str
    def __init__(self, change_id: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., subject: _Optional[str] = ..., action: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...
