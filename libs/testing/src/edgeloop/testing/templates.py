"""Databases copied from a prepared template: a schema migrated once per cluster, not per test.

Creating a database and applying a service's schema to it costs ~0.6 s on a 2-core machine
(the features schema: hypertables, a continuous aggregate, policies), and the features tests
create hundreds. ``CREATE DATABASE ... TEMPLATE`` copies the files of one prepared database
instead (~0.15 s). The copy is the same database the service would have built, since the
service's own code prepared the template; a test of the schema's creation itself takes an
empty database instead.

The template is marked ``IS_TEMPLATE`` with connections refused: TimescaleDB runs no job
scheduler in a template database, and PostgreSQL copies a database only while no session is
connected to it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import psycopg
from edgeloop.platform.pgcluster import PostgresCluster

SESSIONS_GONE_S = 60.0
"""How long the template's last sessions (a TimescaleDB scheduler) may take to end."""
_prepared: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


def prepared_template(cluster: PostgresCluster, name: str,
                      prepare: Callable[[str], None]) -> str:
    """The template database ``name`` of ``cluster``, built by ``prepare(dsn)`` the first time
    it is asked for (once per cluster); returns its name."""
    key = (cluster.dsn(), name)
    with _lock:
        if key not in _prepared:
            prepare(cluster.ensure_database(name))
            _seal(cluster, name)
            _prepared[key] = name
        return _prepared[key]


def _seal(cluster: PostgresCluster, name: str) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        deadline = time.monotonic() + SESSIONS_GONE_S
        while conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()",
                           (name,)).fetchall():
            if time.monotonic() > deadline:
                raise TimeoutError(f"sessions on the template {name} did not end")
            time.sleep(0.1)


def copy_of(cluster: PostgresCluster, template: str, prefix: str = "test") -> str:
    """A new database of ``cluster`` copied from ``template``; returns its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return cluster.dsn(name)
