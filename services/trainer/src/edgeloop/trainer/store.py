"""Sweeps, events and Grafana notifications in PostgreSQL (schema ``trainer``).

A sweep row holds the ``Sweep`` message as JSON (the source of truth, returned by
GetSweep) beside the columns queries need (model, state, time).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2
from edgeloop.platform.errors import NotFound
from edgeloop.platform.migrations import apply_migrations, load_migrations
from google.protobuf import json_format
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

SCHEMA = "trainer"
TERMINAL = (
    sweep_pb2.SWEEP_STATE_SUCCEEDED,
    sweep_pb2.SWEEP_STATE_FAILED,
    sweep_pb2.SWEEP_STATE_CANCELLED,
)


def _json(message: Any) -> Jsonb:
    return Jsonb(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _sweep(data: dict[str, Any]) -> sweep_pb2.Sweep:
    return json_format.ParseDict(data, sweep_pb2.Sweep(), ignore_unknown_fields=True)


def state_name(state: int) -> str:
    """``SWEEP_STATE_RUNNING`` -> ``RUNNING``."""
    return sweep_pb2.SweepState.Name(state).removeprefix("SWEEP_STATE_")


class SweepStore:
    """The trainer's tables, through a connection pool."""

    def __init__(self, database_url: str) -> None:
        self.pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"autocommit": True, "options": f"-c search_path={SCHEMA}"},
        )

    async def open(self) -> None:
        """Open the pool and apply the migrations."""
        await self.pool.open(wait=True, timeout=30)
        async with self.pool.connection() as conn:
            await apply_migrations(conn, SCHEMA, load_migrations("edgeloop.trainer"))

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()

    async def insert(
        self, sweep: sweep_pb2.Sweep, request: trainer_service_pb2.StartSweepRequest
    ) -> bool:
        """Store a new sweep; False if a sweep already has the request's ``request_id``."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO sweeps (sweep_id, model_name, state, created_at, sweep, request, "
                "request_id) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING",
                (
                    sweep.sweep_id,
                    sweep.model_name,
                    state_name(sweep.state),
                    sweep.created_at.ToDatetime(tzinfo=UTC),
                    _json(sweep),
                    _json(request),
                    request.request_id or None,
                ),
            )
            return cursor.rowcount == 1

    async def by_request_id(self, request_id: str) -> str | None:
        """The sweep a StartSweep with this ``request_id`` queued, if any."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT sweep_id FROM sweeps WHERE request_id = %s", (request_id,)
            )
            row = await cursor.fetchone()
            return row[0] if row else None

    async def save(self, sweep: sweep_pb2.Sweep) -> None:
        """Replace a sweep's stored message and state."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE sweeps SET state = %s, sweep = %s WHERE sweep_id = %s",
                (state_name(sweep.state), _json(sweep), sweep.sweep_id),
            )

    async def get(self, sweep_id: str) -> sweep_pb2.Sweep:
        """One sweep; :class:`NotFound` naming the id."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT sweep FROM sweeps WHERE sweep_id = %s", (sweep_id,))
            ).fetchone()
        if row is None:
            raise NotFound(f"sweep_id: no sweep {sweep_id!r}")
        return _sweep(row[0])

    async def request(self, sweep_id: str) -> trainer_service_pb2.StartSweepRequest:
        """The request a sweep was started with."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT request FROM sweeps WHERE sweep_id = %s", (sweep_id,))
            ).fetchone()
        if row is None:
            raise NotFound(f"sweep_id: no sweep {sweep_id!r}")
        return json_format.ParseDict(row[0], trainer_service_pb2.StartSweepRequest())

    async def list(
        self, model_name: str = "", limit: int = 50, observation_id: str = ""
    ) -> list[sweep_pb2.Sweep]:
        """Sweeps, newest first; with ``observation_id``, those whose snapshot holds it."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT sweep FROM sweeps WHERE (%s = '' OR model_name = %s) AND (%s = '' OR "
                "sweep->'dataset'->>'snapshot_id' IN (SELECT snapshot_id "
                "FROM snapshot_observations WHERE observation_id = %s)) "
                "ORDER BY created_at DESC LIMIT %s",
                (model_name, model_name, observation_id, observation_id, limit),
            )
            return [_sweep(row[0]) for row in await cursor.fetchall()]

    async def add_snapshot_observations(self, snapshot_id: str, observation_ids: list[str]) -> None:
        """Record the observations of a new snapshot (for ListSweeps by observation)."""
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO snapshot_observations (observation_id, snapshot_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                [(oid, snapshot_id) for oid in observation_ids],
            )

    async def ids_in_state(self, state: int, model_name: str = "") -> list[str]:
        """Ids of sweeps in ``state`` (of one model, if given), oldest first."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT sweep_id FROM sweeps WHERE state = %s AND (%s = '' OR model_name = %s) "
                "ORDER BY created_at",
                (state_name(state), model_name, model_name),
            )
            return [row[0] for row in await cursor.fetchall()]

    async def add_event(self, event: sweep_pb2.SweepEvent) -> int:
        """Append a progress event; returns its sequence number."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO sweep_events (sweep_id, time, event) VALUES (%s, %s, %s) "
                    "RETURNING seq",
                    (event.sweep_id, event.time.ToDatetime(tzinfo=UTC), _json(event)),
                )
            ).fetchone()
        return int(row[0])

    async def events_after(self, sweep_id: str, seq: int) -> list[tuple[int, sweep_pb2.SweepEvent]]:
        """A sweep's events with a sequence number above ``seq``, in order."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT seq, event FROM sweep_events WHERE sweep_id = %s AND seq > %s ORDER BY seq",
                (sweep_id, seq),
            )
            rows = await cursor.fetchall()
        return [(row[0], json_format.ParseDict(row[1], sweep_pb2.SweepEvent())) for row in rows]

    async def claim_alert(self, fingerprint: str, starts_at: str, alertname: str) -> bool:
        """Record a Grafana alert occurrence; False when it was seen before."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO grafana_alerts (fingerprint, starts_at, alertname) "
                    "VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING RETURNING fingerprint",
                    (fingerprint, starts_at, alertname),
                )
            ).fetchone()
        return row is not None

    async def release_alert(self, fingerprint: str, starts_at: str) -> None:
        """Forget an alert occurrence that did not start a sweep."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM grafana_alerts WHERE fingerprint = %s AND starts_at = %s",
                (fingerprint, starts_at),
            )

    async def link_alert(self, fingerprint: str, starts_at: str, sweep_id: str) -> None:
        """Remember which sweep an alert started."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE grafana_alerts SET sweep_id = %s WHERE fingerprint = %s AND starts_at = %s",
                (sweep_id, fingerprint, starts_at),
            )

    async def count_alerts(self) -> int:
        """How many distinct alert occurrences were received."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT count(*) FROM grafana_alerts")).fetchone()
        return int(row[0])
