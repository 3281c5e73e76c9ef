"""SummarizeTraffic: a window's frames and their error per device and per arm.

A fleet view needs counts, the newest frame and the error per device and per deployment
arm, and which version answered each device's newest frame, on the device (its float file
or quantized twin) or on the server. Reading the frames for that (as the console once did,
20,000 rows a refresh) is wrong under a fleet's load: a window of 100 robots at 4 fps holds
120,000 rows in 5 minutes, so a capped read saw only the window's oldest frames. The
database aggregates the whole window instead; a shadow answer's error is against its
frame's sensor value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.features.rows import prediction_source
from edgeloop.features.time_window import requested_window
from edgeloop.platform.errors import Unavailable
from psycopg_pool import AsyncConnectionPool

# Devices and answering arms in one pass over the window (a row per grouping set: the
# device's with arm NULL, the arm's with device_id NULL).
_GROUPED = """
SELECT device_id, arm, model_version, count(*), max(time), count(error_mm),
       sum(abs(error_mm)::float8)
FROM features.observations
WHERE time >= %(start)s AND time < %(end)s {deployments}
GROUP BY GROUPING SETS ((device_id), (arm, model_version))"""
# A shadow row carries its frame's capture time, so both tables are cut by it (each
# partitioned or BRIN-indexed by time) before the join.
_SHADOWED = """
SELECT s.arm, s.model_version, count(*), count(o.sensor_mm),
       sum(abs(s.prediction_mm - o.sensor_mm)::float8)
FROM features.shadow_predictions s
JOIN features.observations o ON o.observation_id = s.observation_id AND o.time = s.time
WHERE s.time >= %(start)s AND s.time < %(end)s
  AND o.time >= %(start)s AND o.time < %(end)s {deployments}
GROUP BY s.arm, s.model_version"""
# What answered each device's newest frame: the rows at the devices' newest capture times
# (the time index finds them; a device's own row is told apart in Python).
_NEWEST = """
SELECT device_id, time, model_version, prediction_source, device_quantized
FROM features.observations
WHERE time >= %(start)s AND time < %(end)s AND time = ANY(%(times)s)
  AND device_id = ANY(%(devices)s) {deployments}"""


def _mae(labelled: int, abs_sum: float | None) -> dict[str, float]:
    return {"mae_mm": abs_sum / labelled} if labelled and abs_sum is not None else {}


async def _fetch(conn: psycopg.AsyncConnection, statement: str, column: str,
                 params: dict[str, Any]) -> list[tuple[Any, ...]]:
    where = f"AND {column} = ANY(%(deployments)s)" if params["deployments"] else ""
    cursor = await conn.execute(statement.format(deployments=where), params)
    return await cursor.fetchall()


@dataclass
class _ArmTotals:
    answered: int = 0
    shadowed: int = 0
    labelled: int = 0
    abs_sum: float = 0.0


def _arms(answered: Sequence[tuple[Any, ...]],
          shadowed: Sequence[tuple[Any, ...]]) -> list[pb.ArmTraffic]:
    """One entry per (arm, version): answered and shadowed counts, error over both."""
    totals: dict[tuple[str, str], _ArmTotals] = {}
    for rows, kind in ((answered, "answered"), (shadowed, "shadowed")):
        for arm, version, frames, labelled, abs_sum in rows:
            entry = totals.setdefault((arm, version), _ArmTotals())
            setattr(entry, kind, getattr(entry, kind) + frames)
            entry.labelled += labelled
            entry.abs_sum += abs_sum or 0.0
    return [pb.ArmTraffic(arm=arm, model_version=version, answered=t.answered,
                          shadowed=t.shadowed, labelled=t.labelled,
                          **_mae(t.labelled, t.abs_sum))
            for (arm, version), t in sorted(totals.items())]


async def summarize_traffic(pool: AsyncConnectionPool, request: pb.SummarizeTrafficRequest,
                            now: datetime) -> pb.SummarizeTrafficResponse:
    """Count the window's frames per device and per arm (``request``'s deployments, or all)."""
    start, end = requested_window(request, now)
    params = {"start": start, "end": end, "deployments": list(request.deployments)}
    try:
        async with pool.connection() as conn:
            grouped = await _fetch(conn, _GROUPED, "deployment", params)
            shadowed = await _fetch(conn, _SHADOWED, "o.deployment", params)
            devices = sorted(row for row in grouped if row[0] is not None)
            newest = await _newest(conn, {**params, "devices": [row[0] for row in devices],
                                          "times": [row[4] for row in devices]})
    except psycopg.OperationalError as exc:
        raise Unavailable(f"database unreachable: {exc}") from exc
    answered = [(arm, version, frames, labelled, abs_sum)
                for device_id, arm, version, frames, _, labelled, abs_sum in grouped
                if device_id is None]
    reply = pb.SummarizeTrafficResponse(arms=_arms(answered, shadowed))
    for device_id, _, _, frames, last, labelled, abs_sum in devices:
        entry = reply.devices.add(device_id=device_id, frames=frames, labelled=labelled,
                                  **_mae(labelled, abs_sum), **newest.get((device_id, last), {}))
        entry.last_frame.FromDatetime(last)
    return reply


async def _newest(conn: psycopg.AsyncConnection,
                  params: dict[str, Any]) -> dict[tuple[str, datetime], dict[str, Any]]:
    """Per (device, newest capture time): the ``DeviceTraffic`` fields of what answered that
    frame (none for a frame without an answer)."""
    if not params["devices"]:
        return {}
    newest = {}
    for device_id, time, version, source, quantized in await _fetch(conn, _NEWEST, "deployment",
                                                                     params):
        if source:
            newest[(device_id, time)] = {"model_version": version,
                                         "source": prediction_source(source),
                                         "quantized": quantized}
    return newest
