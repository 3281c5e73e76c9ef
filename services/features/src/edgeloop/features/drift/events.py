"""Drift events in ``features.drift_events``: open, attach a sweep, note, resolve, list."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

CHANGE_POINT = "change_point_unix_s"
"""Key in an event's values: when the change began, for rules that date it (CUSUM)."""
REFUSED_SWEEPS = "retrain_refused_sweeps"
"""Key in an event's values: retraining sweeps of its drift the gate refused so far."""
NEXT_SWEEP_FRAMES = "retrain_next_sweep_frames"
"""Key in an event's values: labelled frames of the new world the next sweep waits for."""
_COLUMNS = ("event_id, rule, kind, deployment, model_name, model_version, state, \"values\", "
            "threshold, window_start, window_end, fired_at, resolved_at, sweep_id, "
            "sweep_trace_id, note")


@dataclass
class DriftEventRow:
    """One drift event as stored."""

    event_id: str
    rule: str
    kind: str
    deployment: str
    model_name: str
    model_version: str
    state: str
    values: dict[str, float]
    threshold: str
    window_start: datetime
    window_end: datetime
    fired_at: datetime
    resolved_at: datetime | None = None
    sweep_id: str = ""
    sweep_trace_id: str = ""
    note: str = ""

    @property
    def change_point(self) -> datetime | None:
        """When the change began, if the rule dated it (else None: a window's rule)."""
        seconds = self.values.get(CHANGE_POINT)
        return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _row(record: dict[str, Any]) -> DriftEventRow:
    record = dict(record)
    record["event_id"] = str(record["event_id"])
    return DriftEventRow(**record)


class DriftEvents:
    """Reads and writes drift events."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def open(self, event: DriftEventRow) -> DriftEventRow:
        """Store a new open event (its id is generated)."""
        event.event_id = str(uuid.uuid4())
        async with self.pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO features.drift_events ({_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, NULL, '', '', '')",
                (event.event_id, event.rule, event.kind, event.deployment, event.model_name,
                 event.model_version, json.dumps(event.values), event.threshold,
                 event.window_start, event.window_end, event.fired_at))
        event.state = "open"
        return event

    async def _select(self, where: str, params: tuple[Any, ...],
                      limit: int = 100) -> list[DriftEventRow]:
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(f"SELECT {_COLUMNS} FROM features.drift_events WHERE {where} "
                                 "ORDER BY fired_at DESC LIMIT %s", (*params, limit))
            return [_row(r) for r in await cursor.fetchall()]

    async def open_events(self, deployment: str) -> list[DriftEventRow]:
        """The deployment's open events, newest first."""
        return await self._select("deployment = %s AND state = 'open'", (deployment,))

    async def last_resolved_at(self, rule: str, deployment: str,
                               model_version: str) -> datetime | None:
        """When the rule's latest event about this version of the deployment resolved."""
        events = await self._select("rule = %s AND deployment = %s AND model_version = %s "
                                    "AND state = 'resolved'", (rule, deployment, model_version),
                                    limit=1)
        return events[0].resolved_at if events else None

    async def resolve(self, event_id: str, at: datetime) -> None:
        """Mark an event resolved: its rule has been quiet again."""
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE features.drift_events SET state = 'resolved', "
                               "resolved_at = %s WHERE event_id = %s AND state = 'open'",
                               (at, event_id))

    async def supersede(self, event_id: str, at: datetime, reason: str) -> None:
        """End an open event whose rule still exceeds on a newer version (a new event follows).

        ``reason`` is appended to the note, which keeps what the event's retraining did.
        """
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE features.drift_events SET state = 'superseded', "
                               "resolved_at = %s, "
                               "note = concat_ws('; ', NULLIF(note, ''), %s::text) "
                               "WHERE event_id = %s AND state = 'open'", (at, reason, event_id))

    async def attach_sweep(self, event_ids: list[str], sweep_id: str, trace_id: str,
                           note: str) -> None:
        """Record the retraining sweep the events started."""
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE features.drift_events SET sweep_id = %s, "
                               "sweep_trace_id = %s, note = %s WHERE event_id = ANY(%s)",
                               (sweep_id, trace_id, note, [uuid.UUID(e) for e in event_ids]))

    async def record_refusal(self, sweep_id: str, refused: int, next_frames: int) -> None:
        """Keep on the sweep's events how many sweeps were refused and what the next waits
        for, so a restarted monitor goes on counting."""
        values = json.dumps({REFUSED_SWEEPS: refused, NEXT_SWEEP_FRAMES: next_frames})
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE features.drift_events SET \"values\" = \"values\" || "
                               "%s::jsonb WHERE sweep_id = %s", (values, sweep_id))

    async def detach(self, sweep_id: str, note: str) -> None:
        """Open events of a sweep wait for another one (the note says why; its id is in it)."""
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE features.drift_events SET sweep_id = '', sweep_trace_id = "
                               "'', note = %s WHERE sweep_id = %s AND state = 'open'",
                               (note, sweep_id))

    async def set_note(self, event_ids: list[str], note: str) -> None:
        """Say on open events why nothing is done about them (no sweep attached)."""
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE features.drift_events SET note = %s "
                               "WHERE event_id = ANY(%s)",
                               (note, [uuid.UUID(e) for e in event_ids]))

    async def note(self, sweep_id: str, note: str, trace_id: str = "") -> None:
        """Say what came of a sweep on every event that started or waited for it.

        ``trace_id`` (the sweep's trace, known once it ran) is recorded when given.
        """
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE features.drift_events SET note = %s, sweep_trace_id = "
                               "COALESCE(NULLIF(%s, ''), sweep_trace_id) WHERE sweep_id = %s",
                               (note, trace_id, sweep_id))

    async def list(self, deployment: str = "", open_only: bool = False,
                   limit: int = 100) -> list[DriftEventRow]:
        """Events, newest first."""
        clauses, params = ["TRUE"], []
        if deployment:
            clauses.append("deployment = %s")
            params.append(deployment)
        if open_only:
            clauses.append("state = 'open'")
        return await self._select(" AND ".join(clauses), tuple(params), limit)
