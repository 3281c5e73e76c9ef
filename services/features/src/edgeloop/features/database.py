"""The connection pool: opened at start with retries, so a database that comes up a
little after the service does not stop it; a database that never answers does, with a
message naming ``EDGELOOP_DATABASE_URL``."""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from edgeloop.platform.errors import ConfigError
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)


def _instrument() -> None:
    # Database spans under the ingest and query spans; optional, so a missing
    # instrumentation package costs traces, not the service.
    try:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    except ImportError:
        return
    instrumentor = PsycopgInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(enable_commenter=False)


async def connect_once(url: str, timeout_s: float) -> psycopg.AsyncConnection:
    """One connection, retried with backoff until ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            return await psycopg.AsyncConnection.connect(url, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if time.monotonic() + delay > deadline:
                raise ConfigError(f"EDGELOOP_DATABASE_URL: cannot connect after {timeout_s:.0f}s: "
                                  f"{str(exc).strip()}") from exc
            log.info("database not reachable yet, retrying", extra={"retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def open_pool(url: str, max_size: int) -> AsyncConnectionPool:
    """An open pool of connections to ``url``."""
    _instrument()
    # timeout: how long a call waits for a connection; a database that is down fails the
    # call with UNAVAILABLE within it (PoolTimeout is an OperationalError), well inside
    # the senders' deadlines.
    pool = AsyncConnectionPool(url, min_size=2, max_size=max_size, open=False, timeout=10.0,
                               kwargs={"autocommit": True}, name="features")
    await pool.open(wait=True, timeout=30)
    return pool
