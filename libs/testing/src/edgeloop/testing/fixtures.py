"""pytest fixtures: a private PostgreSQL cluster per session, a database per test, TLS files."""

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
from edgeloop.testing.tls import TLSFiles, make_tls_files


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster on a free loopback port, stopped after the session."""
    root = Path(tempfile.mkdtemp(prefix="edgeloop-test-pg-"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(data_dir=root / "data", port=free_port(), durable=False)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(pg_cluster: PostgresCluster) -> str:
    """A new, empty database for one test."""
    return pg_cluster.ensure_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A local CA with a server certificate (127.0.0.1, localhost) and client certificates."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))
