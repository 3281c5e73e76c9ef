import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeadLetter(_message.Message):
    __slots__ = ("dead_letter_id", "observation_id", "device_id", "deployment", "reason", "first_refused_at", "last_refused_at", "attempts", "size_bytes")
    DEAD_LETTER_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIRST_REFUSED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_REFUSED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    dead_letter_id: int
    observation_id: str
    device_id: str
    deployment: str
    reason: str
    first_refused_at: _timestamp_pb2.Timestamp
    last_refused_at: _timestamp_pb2.Timestamp
    attempts: int
    size_bytes: int
    def __init__(self, dead_letter_id: _Optional[int] = ..., observation_id: _Optional[str] = ..., device_id: _Optional[str] = ..., deployment: _Optional[str] = ..., reason: _Optional[str] = ..., first_refused_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_refused_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("deployment", "device_id", "limit")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    device_id: str
    limit: int
    def __init__(self, deployment: _Optional[str] = ..., device_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "total")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    total: int
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("dead_letter_ids", "deployment", "data_group")
    DEAD_LETTER_IDS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    DATA_GROUP_FIELD_NUMBER: _ClassVar[int]
    dead_letter_ids: _containers.RepeatedScalarFieldContainer[int]
    deployment: str
    data_group: str
    def __init__(self, dead_letter_ids: _Optional[_Iterable[int]] = ..., deployment: _Optional[str] = ..., data_group: _Optional[str] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("stored", "duplicates", "still_refused", "reasons")
    class ReasonsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    STILL_REFUSED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicates: int
    still_refused: int
    reasons: _containers.ScalarMap[int, str]
    def __init__(self, stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., still_refused: _Optional[int] = ..., reasons: _Optional[_Mapping[int, str]] = ...) -> None: ...
