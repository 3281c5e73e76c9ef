"""Checks on an incoming observation; each failure names the offending field."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta

from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.platform.errors import InvalidArgument

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)
MAX_JPEG_BYTES = 16 * 1024 * 1024
MAX_SEQ = 2**63 - 1
MAX_TEXT = 200
# A deployment name becomes a folder of object keys: no separators, no dot-only names.
_KEY_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@+=-]{0,199}$")


def canonical_uuid(value: str, field: str) -> str:
    """``value`` as a lower-case hyphenated UUID, or :class:`InvalidArgument` naming ``field``."""
    if not value:
        raise InvalidArgument(field, "required")
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise InvalidArgument(field, f"{value[:60]!r} is not a UUID") from exc


def _text(value: str, field: str, required: bool = False) -> None:
    if required and not value:
        raise InvalidArgument(field, "required")
    if len(value) > MAX_TEXT:
        raise InvalidArgument(field, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise InvalidArgument(field, "contains a NUL character")


def _finite(obs: observation_pb2.Observation, field: str) -> None:
    if obs.HasField(field) and not math.isfinite(getattr(obs, field)):
        raise InvalidArgument(field, "must be a finite number")


def timestamp(obs: observation_pb2.Observation, field: str) -> datetime | None:
    """The UTC datetime of Timestamp ``field``; None when unset; refused outside years 1-9999."""
    if not obs.HasField(field):
        return None
    try:
        return getattr(obs, field).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field, f"not a valid timestamp ({exc})") from exc


def capture_time(obs: observation_pb2.Observation, now: datetime) -> datetime:
    """The observation's capture time, checked to be set and plausible."""
    time = timestamp(obs, "time")
    if time is None:
        raise InvalidArgument("time", "required")
    if time < EARLIEST or time > now + MAX_CLOCK_SKEW:
        raise InvalidArgument("time", f"{time.isoformat()} is not a plausible capture time")
    return time


def validate(obs: observation_pb2.Observation) -> None:
    """Check every field but the image (decoding it is the statistics' job)."""
    _text(obs.device_id, "device_id", required=True)
    timestamp(obs, "received_at")
    if not obs.deployment:
        raise InvalidArgument("deployment", "required")
    if not _KEY_SAFE.match(obs.deployment):
        raise InvalidArgument("deployment", f"{obs.deployment[:60]!r} must be 1-200 letters, "
                              "digits or ._@+=- and not start with a dot or dash")
    for field in ("session_id", "data_group", "model_name", "model_version", "arm",
                  "trace_id", "traceparent"):
        _text(getattr(obs, field), field)
    if obs.seq > MAX_SEQ:
        raise InvalidArgument("seq", f"larger than {MAX_SEQ}")
    for field in ("prediction_mm", "sensor_mm", "error_mm"):
        _finite(obs, field)
    if not math.isfinite(obs.latency_ms) or obs.latency_ms < 0:
        raise InvalidArgument("latency_ms", "must be a finite number >= 0")
    if len(obs.jpeg) > MAX_JPEG_BYTES:
        raise InvalidArgument("jpeg", f"{len(obs.jpeg)} bytes is more than {MAX_JPEG_BYTES}")
    _validate_shadows(obs)
    _validate_source(obs)


_SOURCES = frozenset(observation_pb2.PredictionSource.values())
"""Known prediction sources (``values()`` builds a new list on every call)."""


def _validate_source(obs: observation_pb2.Observation) -> None:
    if obs.prediction_source not in _SOURCES:
        raise InvalidArgument("prediction_source", f"unknown source {obs.prediction_source}")
    if obs.HasField("server_shadow"):
        _text(obs.server_shadow.model_version, "server_shadow.model_version")
        if not math.isfinite(obs.server_shadow.prediction_mm):
            raise InvalidArgument("server_shadow.prediction_mm", "must be a finite number")


def _validate_shadows(obs: observation_pb2.Observation) -> None:
    arms: set[str] = set()
    for index, shadow in enumerate(obs.shadow_predictions):
        _text(shadow.arm, f"shadow_predictions[{index}].arm", required=True)
        if shadow.arm in arms:
            raise InvalidArgument(f"shadow_predictions[{index}].arm", f"{shadow.arm!r} repeated")
        arms.add(shadow.arm)
        _text(shadow.model_name, f"shadow_predictions[{index}].model_name")
        _text(shadow.model_version, f"shadow_predictions[{index}].model_version")
        if not math.isfinite(shadow.prediction_mm):
            raise InvalidArgument(f"shadow_predictions[{index}].prediction_mm",
                                  "must be a finite number")
