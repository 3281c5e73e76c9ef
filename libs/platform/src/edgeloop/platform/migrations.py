"""Versioned SQL migrations, applied in order at service start.

Migrations are files ``NNNN_name.sql`` in a package folder. Each runs once, in its
own transaction, recorded in ``<schema>.schema_migrations``; an advisory lock keeps
two processes from applying them at the same time. A file whose first line is
``-- edgeloop: no-transaction`` runs outside a transaction block (statements such as
TimescaleDB's continuous aggregates refuse to run inside one).
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg
import sqlparse
from psycopg import sql

log = logging.getLogger(__name__)
NO_TRANSACTION = "-- edgeloop: no-transaction"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def transactional(self) -> bool:
        """False when the file asks to run outside a transaction block."""
        return not self.sql.lstrip().startswith(NO_TRANSACTION)


def load_migrations(package: str, folder: str = "migrations") -> list[Migration]:
    """Read the migration files of ``package``/``folder``, ordered by version."""
    root: Traversable = resources.files(package).joinpath(folder)
    found = []
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {package}/{folder}")
    return sorted(found, key=lambda m: m.version)


async def apply_migrations(conn: psycopg.AsyncConnection, schema: str,
                           migrations: list[Migration]) -> list[int]:
    """Apply the pending ``migrations`` in ``schema``; return the versions applied now."""
    await conn.set_autocommit(True)
    lock_key = zlib.crc32(f"edgeloop:migrations:{schema}".encode())
    await conn.execute("SELECT pg_advisory_lock(%s)", (lock_key,))
    try:
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        table = sql.Identifier(schema, "schema_migrations")
        await conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
                                   "name text NOT NULL, "
                                   "applied_at timestamptz NOT NULL DEFAULT now())")
                           .format(table))
        cursor = await conn.execute(sql.SQL("SELECT version FROM {}").format(table))
        done = {row[0] for row in await cursor.fetchall()}
        applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            await _apply_one(conn, schema, table, migration)
            log.info("applied migration", extra={"schema": schema, "version": migration.version,
                                                 "migration": migration.name})
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))


async def _apply_one(conn: psycopg.AsyncConnection, schema: str, table: sql.Identifier,
                     migration: Migration) -> None:
    search_path = sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema))
    record = sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(table)
    if migration.transactional:
        async with conn.transaction():
            await conn.execute(search_path)
            await conn.execute(migration.sql.encode())
            await conn.execute(record, (migration.version, migration.name))
    else:
        await conn.execute(search_path)
        # One statement at a time: a multi-statement string is a single implicit
        # transaction, which is exactly what such a migration must avoid.
        for statement in sqlparse.split(migration.sql):
            if sqlparse.format(statement, strip_comments=True).strip(" ;\n"):
                await conn.execute(statement.encode())
        await conn.execute(record, (migration.version, migration.name))
    await conn.execute("RESET search_path")
