"""Observations as table rows and back: the column list shared by ingest and queries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.statistics import STAT_NAMES, DecodedStats
from edgeloop.features.validation import timestamp

CONTEXT_COLUMNS: tuple[str, ...] = (
    "observation_id", "time", "received_at", "device_id", "session_id", "seq", "deployment",
    "data_group", "model_name", "model_version", "arm", "prediction_mm", "sensor_mm",
    "error_mm", "latency_ms", "trace_id", "traceparent", "late", "image_key",
)
IMAGE_COLUMNS: tuple[str, ...] = ("image_bytes", "width", "height")
SOURCE_COLUMNS: tuple[str, ...] = ("prediction_source", "server_shadow_mm",
                                   "server_shadow_model_version", "device_quantized")
"""Where the prediction came from, the server's shadow of a device prediction, and whether
the device ran the version's quantized twin."""
COLUMNS: tuple[str, ...] = CONTEXT_COLUMNS + IMAGE_COLUMNS + STAT_NAMES + SOURCE_COLUMNS
"""Columns written by ingest, in COPY order (``ingested_at`` takes its default)."""
SHADOW_COLUMNS: tuple[str, ...] = ("observation_id", "time", "arm", "model_name",
                                   "model_version", "prediction_mm")


@dataclass(frozen=True, slots=True)
class PreparedObservation:
    """A validated observation whose image is stored: ready to be inserted."""

    observation_id: str
    row: tuple[Any, ...]
    shadow_rows: tuple[tuple[Any, ...], ...]


def _optional(obs: observation_pb2.Observation, field: str) -> float | None:
    return getattr(obs, field) if obs.HasField(field) else None


def _error_mm(obs: observation_pb2.Observation) -> float | None:
    # The gateway sends the error; derive it when it did not but both values are there.
    if obs.HasField("error_mm"):
        return obs.error_mm
    if obs.HasField("prediction_mm") and obs.HasField("sensor_mm"):
        return obs.prediction_mm - obs.sensor_mm
    return None


def to_row(obs: observation_pb2.Observation, observation_id: str, time: datetime,
           image_key: str, decoded: DecodedStats) -> tuple[Any, ...]:
    """The ``COLUMNS`` values of a validated observation."""
    received = timestamp(obs, "received_at")
    context = (
        uuid.UUID(observation_id), time, received, obs.device_id, obs.session_id, obs.seq,
        obs.deployment, obs.data_group, obs.model_name, obs.model_version, obs.arm,
        _optional(obs, "prediction_mm"), _optional(obs, "sensor_mm"), _error_mm(obs),
        obs.latency_ms, obs.trace_id, obs.traceparent, obs.late, image_key,
    )
    return (*context, len(obs.jpeg), decoded.width, decoded.height, *decoded.stats.values(),
            *_source(obs))


_SOURCE_NAMES = {observation_pb2.PredictionSource.PREDICTION_SOURCE_SERVER: "server",
                 observation_pb2.PredictionSource.PREDICTION_SOURCE_DEVICE: "device"}
_SOURCE_VALUES = {name: value for value, name in _SOURCE_NAMES.items()}


def prediction_source(column: str) -> observation_pb2.PredictionSource:
    """The contract's source of a ``prediction_source`` column value ('' is unspecified)."""
    return _SOURCE_VALUES.get(column,
                              observation_pb2.PredictionSource.PREDICTION_SOURCE_UNSPECIFIED)


def _source(obs: observation_pb2.Observation) -> tuple[str, float | None, str, bool]:
    """The ``SOURCE_COLUMNS`` values: unspecified with a prediction means served (old gateways)."""
    source = ""
    if obs.HasField("prediction_mm"):
        source = _SOURCE_NAMES.get(obs.prediction_source, "server")
    quantized = source == "device" and obs.device_quantized
    if not obs.HasField("server_shadow"):
        return source, None, "", quantized
    return source, obs.server_shadow.prediction_mm, obs.server_shadow.model_version, quantized


def shadow_rows(obs: observation_pb2.Observation, observation_id: str,
                time: datetime) -> tuple[tuple[Any, ...], ...]:
    """The ``SHADOW_COLUMNS`` rows of an observation's challenger answers."""
    return tuple((uuid.UUID(observation_id), time, s.arm, s.model_name, s.model_version,
                  s.prediction_mm) for s in obs.shadow_predictions)


def from_row(row: dict[str, Any]) -> observation_pb2.Observation:
    """An ``Observation`` (without jpeg and shadow predictions) from a selected row."""
    obs = observation_pb2.Observation(
        observation_id=str(row["observation_id"]), device_id=row["device_id"],
        session_id=row["session_id"], seq=row["seq"], deployment=row["deployment"],
        data_group=row["data_group"], model_name=row["model_name"],
        model_version=row["model_version"], arm=row["arm"], latency_ms=row["latency_ms"],
        trace_id=row["trace_id"], traceparent=row["traceparent"], late=row["late"],
        image_key=row["image_key"],
        stats=observation_pb2.ImageStats(**{name: row[name] for name in STAT_NAMES}),
    )
    obs.time.FromDatetime(row["time"])
    if row["received_at"] is not None:
        obs.received_at.FromDatetime(row["received_at"])
    for field in ("prediction_mm", "sensor_mm", "error_mm"):
        if row[field] is not None:
            setattr(obs, field, row[field])
    obs.prediction_source = prediction_source(row["prediction_source"])
    obs.device_quantized = row["device_quantized"]
    if row["server_shadow_mm"] is not None:
        obs.server_shadow.CopyFrom(observation_pb2.ArmPrediction(
            arm=obs.arm, model_name=obs.model_name,
            model_version=row["server_shadow_model_version"],
            prediction_mm=row["server_shadow_mm"]))
    return obs
