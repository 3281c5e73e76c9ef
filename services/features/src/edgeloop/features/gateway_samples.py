"""RecordGatewaySamples and ListGatewaySamples: gateways' periodic samples of their spool,
recording and robots.

A gateway's status file says how its spool and robots are now; an operator watching a fleet
in Grafana also wants how they were: when the spool began to fill, how long live frames
were answered without a record, how many robots streamed meanwhile. Each gateway process
sends a sample every few seconds (and the ones it kept while this service was down); they
are rows of ``features.gateway_samples``, one per gateway and sample time, so a batch sent
again after a lost reply is stored once. Grafana reads the table; the console lists a
window of it (each gateway's backlog over the last half hour beside its status). The room
left on each spool's disk is kept too: Grafana's operators' rule ``gateway_disk_low`` warns
before a full disk leaves frames unrecorded, and the console shows it for gateways whose
status file it cannot read. So are the streaming robots whose clock the gateway judged off
(their count and the furthest one's offset): the rule ``robot_clock_off`` names the gateway.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import psycopg
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.features.time_window import requested_window
from edgeloop.platform.errors import InvalidArgument, Unavailable
from edgeloop.platform.gateway_status import RECORDING_STATE_WORDS, RECORDING_STATES_BY_WORD
from psycopg_pool import AsyncConnectionPool

MAX_SAMPLES = 10_000
"""Samples one call may carry (a gateway's hour at 1 s, far more than it keeps)."""

_INSERT = """
INSERT INTO features.gateway_samples (time, gateway_id, backlog_bytes, max_bytes, recording,
    robots_streaming, streams_open, frames_per_s, not_recorded_per_s, disk_free_bytes,
    disk_total_bytes, robots_clock_off, worst_clock_offset_s)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (gateway_id, time) DO NOTHING"""

_SELECT = """
SELECT time, gateway_id, backlog_bytes, max_bytes, recording, robots_streaming, streams_open,
       frames_per_s, not_recorded_per_s, disk_free_bytes, disk_total_bytes, robots_clock_off,
       worst_clock_offset_s
FROM features.gateway_samples
WHERE time >= %(start)s AND time < %(end)s {gateways}
ORDER BY gateway_id, time"""

Row = tuple[datetime, str, int, int, str, int, int, float, float, int | None, int | None, int,
            float | None]


def sample_row(sample: pb.GatewaySample, index: int) -> Row:
    """The table row of one sample; :class:`InvalidArgument` naming the field if it is bad."""
    field = f"samples[{index}]"
    if not sample.gateway_id:
        raise InvalidArgument(f"{field}.gateway_id", "is required")
    if not sample.HasField("sampled_at"):
        raise InvalidArgument(f"{field}.sampled_at", "is required")
    recording = RECORDING_STATE_WORDS.get(sample.recording)
    if recording is None:
        raise InvalidArgument(f"{field}.recording", "must be a GatewayRecordingState other "
                                                    "than UNSPECIFIED")
    for name in ("frames_per_s", "not_recorded_per_s"):
        value = getattr(sample, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"{field}.{name}", "must be a finite, non-negative number")
    if sample.robots_clock_off > sample.robots_streaming:
        raise InvalidArgument(f"{field}.robots_clock_off", "must not exceed robots_streaming")
    if not math.isfinite(sample.worst_clock_offset_s):
        raise InvalidArgument(f"{field}.worst_clock_offset_s", "must be a finite number")
    if sample.disk_free_bytes > sample.disk_total_bytes:
        raise InvalidArgument(f"{field}.disk_free_bytes", "must not exceed disk_total_bytes "
                                                          "(both 0 when not measured)")
    try:
        sampled_at = sample.sampled_at.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"{field}.sampled_at", f"is not a valid timestamp: {exc}") from exc
    return (sampled_at, sample.gateway_id, sample.backlog_bytes, sample.max_bytes, recording,
            sample.robots_streaming, sample.streams_open, sample.frames_per_s,
            sample.not_recorded_per_s, *_disk_columns(sample), sample.robots_clock_off,
            sample.worst_clock_offset_s if sample.robots_clock_off else None)


def _disk_columns(sample: pb.GatewaySample) -> tuple[int | None, int | None]:
    """The disk's free and total bytes; NULL both when the gateway did not measure them."""
    if not sample.disk_total_bytes:
        return None, None
    return sample.disk_free_bytes, sample.disk_total_bytes


async def record_gateway_samples(pool: AsyncConnectionPool,
                                 request: pb.RecordGatewaySamplesRequest,
                                 ) -> pb.RecordGatewaySamplesResponse:
    """Store the request's samples in one transaction; a bad one refuses the whole call (a
    gateway sends only what it measured, so a bad sample is a bug to see, not data to skip)."""
    if len(request.samples) > MAX_SAMPLES:
        raise InvalidArgument("samples", f"at most {MAX_SAMPLES} in one call")
    rows = [sample_row(sample, i) for i, sample in enumerate(request.samples)]
    if not rows:
        return pb.RecordGatewaySamplesResponse()
    try:
        async with pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(_INSERT, rows, returning=False)
            stored = cursor.rowcount
    except psycopg.OperationalError as exc:
        raise Unavailable(f"database unreachable: {exc}") from exc
    return pb.RecordGatewaySamplesResponse(stored=max(stored, 0))


def _sample_message(row: Row) -> pb.GatewaySample:
    (at, gateway_id, backlog, capacity, recording, robots, streams, fps, unrecorded, free, total,
     clocks_off, worst_offset) = row
    sample = pb.GatewaySample(
        gateway_id=gateway_id, backlog_bytes=backlog, max_bytes=capacity,
        recording=RECORDING_STATES_BY_WORD.get(recording, pb.GATEWAY_RECORDING_STATE_UNSPECIFIED),
        robots_streaming=robots, streams_open=streams, frames_per_s=fps,
        not_recorded_per_s=unrecorded, disk_free_bytes=free or 0, disk_total_bytes=total or 0,
        robots_clock_off=clocks_off, worst_clock_offset_s=worst_offset or 0.0)
    sample.sampled_at.FromDatetime(at)
    return sample


def thinned(rows: list[Row], most: int) -> list[Row]:
    """At most ``most`` of one gateway's ``rows`` (oldest first), evenly spread, the newest
    always kept; all of them when ``most`` is 0."""
    if not most or len(rows) <= most:
        return rows
    step = len(rows) / most
    return [rows[len(rows) - 1 - round(i * step)] for i in reversed(range(most))]


async def list_gateway_samples(pool: AsyncConnectionPool, request: pb.ListGatewaySamplesRequest,
                               now: datetime) -> pb.ListGatewaySamplesResponse:
    """The window's samples by gateway and time, each gateway's thinned if asked."""
    start, end = requested_window(request, now)
    params = {"start": start, "end": end, "gateways": list(request.gateway_ids)}
    where = "AND gateway_id = ANY(%(gateways)s)" if request.gateway_ids else ""
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute(_SELECT.format(gateways=where), params)
            rows: list[Row] = await cursor.fetchall()
    except psycopg.OperationalError as exc:
        raise Unavailable(f"database unreachable: {exc}") from exc
    by_gateway: dict[str, list[Row]] = {}
    for row in rows:
        by_gateway.setdefault(row[1], []).append(row)
    return pb.ListGatewaySamplesResponse(samples=[
        _sample_message(row) for gateway_rows in by_gateway.values()
        for row in thinned(gateway_rows, request.max_per_gateway)])
