"""pytest fixtures: private PostgreSQL clusters per session and a database per test.

``pg_cluster`` is the session's default cluster: it preloads TimescaleDB whenever the
extension is installed, as ``edgeloop up`` does. The features schema has two branches
(TimescaleDB and plain PostgreSQL), so a test can ask for both: mark it (or its module)
``@pytest.mark.db_branches()`` and it runs once per branch, ``database_url`` and
``db_branch`` following the branch; ``@pytest.mark.db_branches("plain")`` picks one.
The plain branch runs on a second cluster started without the preload (only when
TimescaleDB is installed: otherwise the default cluster is plain already); the
TimescaleDB variants are skipped, with the reason, where the extension is not installed
(``./run test`` installs it, so CI runs both). ``ray_nodes`` is one real Ray cluster (a
head node process) per session for the tests that need Ray; ``tls_files`` a local CA.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgeloop.platform.pgcluster import PostgresCluster, find_bindir, timescaledb_installed
from edgeloop.testing.ports import free_port
from edgeloop.testing.raynodes import RayNodes
from edgeloop.testing.release import release_after_last_user
from edgeloop.testing.tls import TLSFiles, make_tls_files

PLAIN, TIMESCALEDB = "plain", "timescaledb"
DB_BRANCHES = (PLAIN, TIMESCALEDB)
NOT_INSTALLED = ("TimescaleDB is not installed for this PostgreSQL (`./run test` installs it "
                 "from ../shared/timescaledb when run as root)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "db_branches(*branches): run the test once per features-schema database "
                   "branch ('plain', 'timescaledb'; default both) via db_branch/database_url")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("db_branches")
    if marker is None or "db_branch" not in metafunc.fixturenames:
        return
    branches = marker.args or DB_BRANCHES
    unknown = set(branches) - set(DB_BRANCHES)
    if unknown:
        raise pytest.UsageError(f"db_branches: unknown branch {sorted(unknown)}; "
                                f"known: {DB_BRANCHES}")
    # Module scope: module-scoped fixtures (a shared database) can follow the branch, and
    # pytest groups each module's tests by branch.
    metafunc.parametrize("db_branch", branches, indirect=True, scope="module")


def timescaledb_here() -> bool:
    """Whether this machine's PostgreSQL has the TimescaleDB extension installed."""
    return timescaledb_installed(find_bindir())


def _cluster(prefix: str, preload: bool | None) -> Iterator[PostgresCluster]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(data_dir=root / "data", port=free_port(), durable=False,
                              timescaledb_preload=preload)
    try:
        cluster.start()  # inside: a start that fails half-way may leave a server running
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster on a free loopback port, stopped after the session;
    it preloads TimescaleDB when the extension is installed."""
    yield from _cluster("edgeloop-test-pg-", None)


@pytest.fixture(scope="session")
def pg_cluster_plain(request: pytest.FixtureRequest) -> Iterator[PostgresCluster]:
    """A cluster without TimescaleDB (the default one when the extension is not installed)."""
    if not timescaledb_here():
        yield request.getfixturevalue("pg_cluster")
        return
    yield from _cluster("edgeloop-test-pg-plain-", False)


@pytest.fixture(scope="session")
def pg_cluster_timescaledb(request: pytest.FixtureRequest) -> PostgresCluster:
    """The default cluster, which preloads TimescaleDB; skips where it is not installed."""
    if not timescaledb_here():
        pytest.skip(NOT_INSTALLED)
    return request.getfixturevalue("pg_cluster")


def cluster_of(request: pytest.FixtureRequest, branch: str) -> PostgresCluster:
    """The session cluster of ``branch`` ('plain' or 'timescaledb')."""
    return request.getfixturevalue(f"pg_cluster_{branch}")


@pytest.fixture(scope="module")
def db_branch(request: pytest.FixtureRequest) -> str:
    """The database branch the test's ``database_url`` takes: the marked branch, else the
    default cluster's (TimescaleDB when installed)."""
    branch = getattr(request, "param", None)
    if branch is None:
        return TIMESCALEDB if timescaledb_here() else PLAIN
    if branch == TIMESCALEDB and not timescaledb_here():
        pytest.skip(NOT_INSTALLED)
    return str(branch)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_branch: str) -> str:
    """A new, empty database for one test, on the cluster of ``db_branch``."""
    cluster = cluster_of(request, db_branch)
    return cluster.ensure_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A local CA with a server certificate (127.0.0.1, localhost) and client certificates."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def ray_nodes(request: pytest.FixtureRequest) -> Iterator[RayNodes]:
    """One Ray head node (2 CPUs, token auth) as its own process, shared by the session
    and stopped once the last module that uses it has run.

    Ray is heavy on a small machine: modules join it (``edgeloop.testing.raynodes.driver``)
    rather than starting their own, and keep their replicas and trials small.
    """
    nodes = RayNodes(num_cpus=2).start()
    release_after_last_user(request, nodes.stop)
    try:
        yield nodes
    finally:
        nodes.stop()
