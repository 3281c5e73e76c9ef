"""Plain PostgreSQL's retention: rows older than ``EDGELOOP_RETENTION_DAYS`` deleted in batches.

TimescaleDB drops a table's old chunks by its retention policy (:mod:`~edgeloop.features.schema`);
plain PostgreSQL has no such policy, and with a retention set its tables grew for good all
the same. Here the rows older than the retention go from the three tables the policy covers
(observations, shadow predictions, the gateways' samples), :data:`BATCH` rows a statement
(their ctids picked through the BRIN index on ``time``), so that no statement holds its
locks or writes its WAL for long while the fleet keeps ingesting. The 5-minute view is
computed from the raw rows on this branch, so it reaches back the retention's days only
(TimescaleDB's continuous aggregate keeps its buckets past the raw retention).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

TABLES = ("observations", "shadow_predictions", "gateway_samples")
"""The tables TimescaleDB's retention policy covers (``sql/timescale_retention.sql``)."""
BATCH = 5000
"""Rows deleted by one statement (one short transaction)."""

_DELETE_BATCH = ("DELETE FROM features.{table} WHERE ctid = ANY(ARRAY("
                 "SELECT ctid FROM features.{table} WHERE time < %s LIMIT %s))")


async def delete_expired_rows(pool: AsyncConnectionPool, retention_days: int, now: datetime,
                              batch: int = BATCH) -> dict[str, int]:
    """Delete every row older than ``retention_days`` before ``now``; the rows deleted per
    table (tables with none left out)."""
    cutoff = now - timedelta(days=retention_days)
    deleted: dict[str, int] = {}
    for table in TABLES:
        statement = sql.SQL(_DELETE_BATCH).format(table=sql.Identifier(table))
        total = 0
        while True:
            async with pool.connection() as conn:  # commits each batch on its own
                count = (await conn.execute(statement, (cutoff, batch))).rowcount
            total += count
            if count < batch:
                break
        if total:
            deleted[table] = total
    return deleted
