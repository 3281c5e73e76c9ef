"""pytest fixtures: a private PostgreSQL cluster per session and a database per test; one
real Ray cluster (head node process) per session for the tests that need Ray."""

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
from edgeloop.testing.raynodes import RayNodes


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
def ray_nodes() -> Iterator[RayNodes]:
    """One Ray head node (2 CPUs, token auth) as its own process, shared by the session.

    Ray is heavy on a small machine: modules join it (``edgeloop.testing.raynodes.driver``)
    rather than starting their own, and keep their replicas and trials small.
    """
    nodes = RayNodes(num_cpus=2).start()
    try:
        yield nodes
    finally:
        nodes.stop()
