"""pytest fixtures: a private PostgreSQL cluster per session and a database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeloop.platform.pgcluster import PostgresCluster
from edgeloop.testing.ports import free_port


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster on a free loopback port, stopped after the session."""
    root = Path(tempfile.mkdtemp(prefix="edgeloop-test-pg-"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(data_dir=root / "data", port=free_port(), durable=False)
    try:
        cluster.start()  # inside: a start that fails half-way may leave a server running
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(pg_cluster: PostgresCluster) -> str:
    """A new, empty database for one test."""
    return pg_cluster.ensure_database(f"test_{uuid.uuid4().hex[:12]}")
