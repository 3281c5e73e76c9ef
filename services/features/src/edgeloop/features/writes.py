"""Batch writes of prepared observations: COPY into a temp table, then one INSERT.

The INSERT skips ids stored at any time (``NOT EXISTS`` on the key's leading
``observation_id``) and conflicts on the key (``ON CONFLICT DO NOTHING``, for
concurrent writers), so a replayed observation is counted as a duplicate, never
written twice. If the database refuses the batch for a reason that belongs to one
row, the rows are retried one by one so only that row is rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from edgeloop.features.prepare import Rejection
from edgeloop.features.rows import COLUMNS, SHADOW_COLUMNS, PreparedObservation
from edgeloop.platform.errors import Unavailable
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)
_COLS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_CREATE_STAGE = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS ingest_stage "
                        "(LIKE features.observations INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
_COPY = sql.SQL("COPY ingest_stage ({}) FROM STDIN").format(_COLS)
_INSERT_STAGED = sql.SQL(
    "INSERT INTO features.observations ({cols}) SELECT {cols} FROM ingest_stage s "
    "WHERE NOT EXISTS (SELECT 1 FROM features.observations o "
    "WHERE o.observation_id = s.observation_id) "
    "ON CONFLICT DO NOTHING RETURNING observation_id").format(cols=_COLS)
_INSERT_ONE = sql.SQL(
    "INSERT INTO features.observations ({cols}) SELECT {values} "
    "WHERE NOT EXISTS (SELECT 1 FROM features.observations WHERE observation_id = %s) "
    "ON CONFLICT DO NOTHING RETURNING observation_id").format(
        cols=_COLS, values=sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)))
_INSERT_SHADOW = sql.SQL("INSERT INTO features.shadow_predictions ({}) VALUES ({}) "
                         "ON CONFLICT DO NOTHING").format(
    sql.SQL(", ").join(map(sql.Identifier, SHADOW_COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() * len(SHADOW_COLUMNS)))


@dataclass
class WriteResult:
    """What a write did: ids stored now, and rows the database refused."""

    stored: set[str] = field(default_factory=set)
    rejected: list[Rejection] = field(default_factory=list)


async def existing_ids(pool: AsyncConnectionPool, ids: Sequence[str]) -> set[str]:
    """The ids among ``ids`` that are stored already."""
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT observation_id::text FROM features.observations "
                                        "WHERE observation_id = ANY(%s::uuid[])", (list(ids),))
            return {row[0] for row in await cursor.fetchall()}
    except psycopg.OperationalError as exc:
        raise Unavailable(f"database unreachable: {exc}") from exc


async def _write_staged(conn: psycopg.AsyncConnection,
                        batch: Sequence[PreparedObservation]) -> set[str]:
    async with conn.transaction():
        await conn.execute(_CREATE_STAGE)
        async with conn.cursor() as cursor:
            async with cursor.copy(_COPY) as copy:
                for prepared in batch:
                    await copy.write_row(prepared.row)
            await cursor.execute(_INSERT_STAGED)
            stored = {str(row[0]) for row in await cursor.fetchall()}
            await _write_shadows(cursor, batch, stored)
    return stored


async def _write_shadows(cursor: psycopg.AsyncCursor, batch: Sequence[PreparedObservation],
                         stored: set[str]) -> None:
    rows = [row for p in batch if p.observation_id in stored for row in p.shadow_rows]
    if rows:
        await cursor.executemany(_INSERT_SHADOW, rows)


async def _write_one_by_one(conn: psycopg.AsyncConnection,
                            batch: Sequence[PreparedObservation]) -> WriteResult:
    result = WriteResult()
    for prepared in batch:
        try:
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.execute(_INSERT_ONE, (*prepared.row, prepared.row[0]))
                if await cursor.fetchone():
                    result.stored.add(prepared.observation_id)
                    await _write_shadows(cursor, [prepared], result.stored)
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
            log.warning("database refused an observation: %s", exc,
                        extra={"observation_id": prepared.observation_id})
            result.rejected.append(Rejection(prepared.observation_id,
                                             f"database refused it: {exc.diag.message_primary}"))
    return result


async def write_batch(pool: AsyncConnectionPool,
                      batch: Sequence[PreparedObservation]) -> WriteResult:
    """Insert ``batch``; rows the database refuses are rejected, the others stored."""
    if not batch:
        return WriteResult()
    try:
        async with pool.connection() as conn:
            try:
                return WriteResult(stored=await _write_staged(conn, batch))
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                log.warning("batch refused, retrying row by row: %s", exc)
                return await _write_one_by_one(conn, batch)
    except psycopg.OperationalError as exc:
        raise Unavailable(f"database unreachable: {exc}") from exc
