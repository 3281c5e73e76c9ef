"""Observations as the features service stored them: the demo's source of truth for errors.

Drive summaries give a run's MAE; the maximum error, the serving version of each frame and
the phase-5 timeline need the frames themselves, read back with ``ListObservations``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeloop.compose.demo.metrics import ErrorStats
from edgeloop.compose.demo.services import DemoError, Services
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.contracts.features.v1 import observation_pb2
from google.protobuf.timestamp_pb2 import Timestamp

log = logging.getLogger(__name__)
STREAM_DEADLINE_S = 120.0


@dataclass(frozen=True)
class Record:
    """One stored frame: when, which version answered, how well, and how saturated."""

    time: datetime
    received_at: datetime
    model_version: str
    prediction_mm: float | None
    sensor_mm: float | None
    error_mm: float | None
    saturation: float

    @classmethod
    def of(cls, obs: observation_pb2.Observation) -> Record:
        received = obs.received_at.ToDatetime(tzinfo=UTC) if obs.HasField("received_at") else None
        moment = obs.time.ToDatetime(tzinfo=UTC)
        return cls(moment, received or moment, obs.model_version,
                   obs.prediction_mm if obs.HasField("prediction_mm") else None,
                   obs.sensor_mm if obs.HasField("sensor_mm") else None,
                   obs.error_mm if obs.HasField("error_mm") else None,
                   obs.stats.saturation)


def timestamp(moment: datetime) -> Timestamp:
    """A protobuf timestamp of an aware datetime."""
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


async def list_records(services: Services, deployment: str, device_id: str,
                       start: datetime, end: datetime) -> list[Record]:
    """The device's observations in ``deployment`` captured in [start, end), oldest first."""
    request = fpb.ListObservationsRequest(deployments=[deployment], device_id=device_id,
                                          start_time=timestamp(start), end_time=timestamp(end))

    async def fetch() -> list[Record]:
        found: list[Record] = []
        async for page in services.features.ListObservations(request, timeout=STREAM_DEADLINE_S):
            found.extend(Record.of(obs) for obs in page.observations)
        return found

    return await services.call("features", "ListObservations", fetch)


async def wait_for_records(services: Services, deployment: str, device_id: str,
                           start: datetime, end: datetime, expected: int,
                           timeout_s: float = 120.0, strict: bool = True) -> list[Record]:
    """Poll until ``expected`` frames arrived (the gateway forwards asynchronously).

    With ``strict``, finding none at all is an error; otherwise what arrived is returned.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        records = await list_records(services, deployment, device_id, start, end)
        if len(records) >= expected:
            return records
        if time.monotonic() > deadline:
            if not records and strict:
                raise DemoError(f"none of {expected} frames reached the features service within "
                                f"{timeout_s:.0f} s (deployment {deployment}); see the gateway's "
                                "and the features service's logs")
            log.warning("frames missing in the features service", extra={
                "deployment": deployment, "expected": expected, "stored": len(records)})
            return records
        await asyncio.sleep(2.0)


def errors_of(records: Iterable[Record], model_version: str | None = None) -> ErrorStats:
    """Error statistics of labelled, predicted frames (optionally of one model version)."""
    return ErrorStats.of(r.error_mm for r in records if r.error_mm is not None
                         and (model_version is None or r.model_version == model_version))


def answering_version(records: Iterable[Record]) -> str | None:
    """The model version that answered most of ``records`` (None when none was answered)."""
    versions = Counter(r.model_version for r in records
                       if r.prediction_mm is not None and r.model_version)
    return versions.most_common(1)[0][0] if versions else None
