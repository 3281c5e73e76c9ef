"""The ``features`` schema: versioned migrations, then the branch the database allows.

Migrations (``migrations/NNNN_*.sql``) create the tables. After them, at every start,
:func:`ensure_schema` runs one idempotent branch: TimescaleDB (hypertables, compression,
retention, continuous aggregate ``observations_5m``) when the extension is available,
else plain PostgreSQL (BRIN index on time, view ``observations_5m``). Both branches'
SQL lives in ``sql/``; :func:`branch_sql` renders it so tests can check what would run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import psycopg
import sqlparse
from edgeloop.features.rollup import DATE_BIN, TIME_BUCKET, rollup_select, sql_file
from edgeloop.platform.migrations import apply_migrations, load_migrations

log = logging.getLogger(__name__)
REFRESH_ATTEMPTS, REFRESH_RETRY_S = 20, 0.5
"""The first whole refresh of the rollup waits up to ~10 s for the policy's own refresh."""
SCHEMA = "features"
REFRESH_START_DAYS = 7


@dataclass(frozen=True)
class Policies:
    """TimescaleDB policy settings (ignored on plain PostgreSQL)."""

    retention_days: int = 0
    compress_after_days: int = 7


def refresh_start_days(policies: Policies) -> int:
    """How far back the rollup refresh looks; inside the retention window, never past it."""
    if policies.retention_days:
        return max(1, min(REFRESH_START_DAYS, policies.retention_days - 1))
    return REFRESH_START_DAYS


def branch_sql(timescale: bool, policies: Policies) -> str:
    """The SQL of the branch to run after the migrations."""
    if not timescale:
        return sql_file("plain.sql").format(rollup_select=rollup_select(DATE_BIN))
    text = sql_file("timescale.sql").format(
        rollup_select=rollup_select(TIME_BUCKET),
        compress_after=f"{policies.compress_after_days} days",
        refresh_start=f"{refresh_start_days(policies)} days")
    if policies.retention_days:
        text += "\n" + sql_file("timescale_retention.sql").format(
            retention=f"{policies.retention_days} days")
    return text


def split_statements(text: str) -> list[str]:
    """The SQL statements of ``text`` (dollar-quoted DO blocks kept whole), comments dropped."""
    statements = (sqlparse.format(part, strip_comments=True).strip()
                  for part in sqlparse.split(text))
    return [s.rstrip(";").strip() for s in statements if s.strip(" ;\n")]


ENABLE_HINT = ("add shared_preload_libraries = 'timescaledb' to postgresql.conf and restart "
               "the server (the local stack of `edgeloop up` does this on its next start)")


async def timescaledb_available(conn: psycopg.AsyncConnection) -> bool:
    """Whether the server has loaded the timescaledb library, so the extension can be used.

    Installed extension files alone are not enough: ``CREATE EXTENSION timescaledb`` fails
    with "must be preloaded" unless the server was started with the library preloaded.
    """
    cursor = await conn.execute(
        "SELECT name FROM pg_available_extensions WHERE name = 'timescaledb'")
    if await cursor.fetchone() is None:
        return False
    cursor = await conn.execute("SELECT current_setting('shared_preload_libraries')")
    row = await cursor.fetchone()
    preloaded = {part.strip() for part in (row[0] if row else "").split(",")}
    if "timescaledb" not in preloaded:
        log.warning("timescaledb is installed but not preloaded: using plain PostgreSQL; "
                    "to enable it, " + ENABLE_HINT)
        return False
    return True


async def _continuous_rollup_exists(conn: psycopg.AsyncConnection) -> bool:
    cursor = await conn.execute(
        "SELECT to_regclass('timescaledb_information.continuous_aggregates') IS NOT NULL")
    row = await cursor.fetchone()
    if not (row and row[0]):
        return False  # TimescaleDB not created in this database yet
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = 'features' AND view_name = 'observations_5m')")
    row = await cursor.fetchone()
    return bool(row and row[0])


async def _refresh_whole_rollup(conn: psycopg.AsyncConnection) -> None:
    """Refresh every bucket of the new rollup, retried while another refresh holds it.

    The refresh policy added beside the rollup starts its job at once, and TimescaleDB
    refuses a second refresh of an overlapping window while one runs (LockNotAvailable):
    a features service then died at start (a CI run of 2026-12-05). That job refreshes
    recent buckets only, in well under a second, so the whole refresh waits for it.
    """
    for attempt in range(1, REFRESH_ATTEMPTS + 1):
        try:
            await conn.execute(b"CALL refresh_continuous_aggregate("
                               b"'features.observations_5m', NULL, NULL)")
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == REFRESH_ATTEMPTS:
                raise
            log.info("the rollup is being refreshed by its policy; refreshing it whole after",
                     extra={"attempt": attempt})
            await asyncio.sleep(REFRESH_RETRY_S)


async def ensure_schema(conn: psycopg.AsyncConnection, policies: Policies) -> bool:
    """Apply migrations and the database's branch; return whether TimescaleDB is used."""
    applied = await apply_migrations(conn, SCHEMA, load_migrations("edgeloop.features"))
    timescale = await timescaledb_available(conn)
    await conn.set_autocommit(True)
    rollup_existed = timescale and await _continuous_rollup_exists(conn)
    # One statement at a time in autocommit: a multi-statement string is one implicit
    # transaction, and continuous aggregates refuse to be created inside a transaction.
    for statement in split_statements(branch_sql(timescale, policies)):
        await conn.execute(statement.encode())
    if timescale and not rollup_existed:
        # The rollup is created WITH NO DATA and its policy refreshes only recent buckets;
        # rows a plain-PostgreSQL stack had before would fall below the watermark unseen.
        await _refresh_whole_rollup(conn)
    log.info("schema ready", extra={"schema": SCHEMA, "migrations_applied": applied,
                                    "branch": "timescaledb" if timescale else "postgresql"})
    return timescale
