"""Versioned migrations against a real PostgreSQL cluster."""

from __future__ import annotations

import psycopg
from edgeloop.platform.migrations import Migration, apply_migrations

MIGRATIONS = [
    Migration(1, "create_things", "CREATE TABLE things (id integer PRIMARY KEY, name text);"),
    Migration(2, "add_index", "-- edgeloop: no-transaction\nCREATE INDEX CONCURRENTLY things_name "
                              "ON things (name);\n-- a second statement must not make it one "
                              "transaction\nCREATE INDEX CONCURRENTLY things_id ON things (id);"),
]


async def test_migrations_apply_once_in_order(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        assert await apply_migrations(conn, "example", MIGRATIONS) == [1, 2]
        assert await apply_migrations(conn, "example", MIGRATIONS) == []
        more = [*MIGRATIONS, Migration(3, "add_column", "ALTER TABLE things ADD COLUMN n int;")]
        assert await apply_migrations(conn, "example", more) == [3]
        cursor = await conn.execute("SELECT version, name FROM example.schema_migrations "
                                    "ORDER BY version")
        assert await cursor.fetchall() == [(1, "create_things"), (2, "add_index"),
                                           (3, "add_column")]
        cursor = await conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'example'")
        assert {"things_name", "things_id"} <= {row[0] for row in await cursor.fetchall()}


async def test_failed_migration_is_not_recorded(database_url: str) -> None:
    broken = [Migration(1, "ok", "CREATE TABLE a (id int);"),
              Migration(2, "broken", "CREATE TABLE b (id int); SELECT no_such_function();")]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        try:
            await apply_migrations(conn, "example", broken)
        except psycopg.Error:
            pass
        else:
            raise AssertionError("the broken migration should have failed")
        cursor = await conn.execute("SELECT version FROM example.schema_migrations")
        assert [row[0] for row in await cursor.fetchall()] == [1]
        cursor = await conn.execute("SELECT to_regclass('example.b')")
        assert (await cursor.fetchone())[0] is None
