"""Databases copied from a template prepared once per cluster (edgeloop.testing.templates)."""

from __future__ import annotations

import psycopg
import pytest
from edgeloop.platform.pgcluster import PostgresCluster
from edgeloop.testing.templates import copy_of, prepared_template


def _prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE things (x int)")
        conn.execute("INSERT INTO things VALUES (1)")


def _things(dsn: str) -> list[tuple[int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT x FROM things ORDER BY x").fetchall()


def test_copies_hold_what_the_template_was_prepared_with_and_are_their_own(
        pg_cluster: PostgresCluster) -> None:
    prepared: list[str] = []

    def prepare(dsn: str) -> None:
        prepared.append(dsn)
        _prepare(dsn)

    template = prepared_template(pg_cluster, "things_template", prepare)
    assert prepared_template(pg_cluster, "things_template", prepare) == template
    assert len(prepared) == 1, "prepared once per cluster"
    first, second = copy_of(pg_cluster, template), copy_of(pg_cluster, template)
    assert first != second
    with psycopg.connect(first, autocommit=True) as conn:
        conn.execute("INSERT INTO things VALUES (2)")
    assert _things(first) == [(1,), (2,)] and _things(second) == [(1,)]
    # sealed: no session (nor TimescaleDB's scheduler) may connect to the template
    with pytest.raises(psycopg.OperationalError, match="not currently accepting connections"):
        psycopg.connect(pg_cluster.dsn(template)).close()
