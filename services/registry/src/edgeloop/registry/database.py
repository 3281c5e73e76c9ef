"""The registry's PostgreSQL connection pool, opened with its migrations applied."""

from __future__ import annotations

import psycopg
from edgeloop.platform.errors import Unavailable
from edgeloop.platform.migrations import apply_migrations, load_migrations
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

SCHEMA = "registry"


async def open_pool(database_url: str, max_size: int = 8) -> AsyncConnectionPool:
    """Apply the schema's migrations, then open a pool whose connections use the schema."""
    try:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await apply_migrations(conn, SCHEMA, load_migrations("edgeloop.registry"))
    except psycopg.OperationalError as exc:
        raise Unavailable(f"EDGELOOP_DATABASE_URL: cannot reach PostgreSQL: {exc}") from exc
    pool = AsyncConnectionPool(
        database_url, min_size=1, max_size=max_size, open=False,
        kwargs={"row_factory": dict_row, "options": f"-c search_path={SCHEMA}"},
    )
    await pool.open(wait=True, timeout=30)
    return pool
