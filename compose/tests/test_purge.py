"""Starting over: `edgeloop down --purge` deletes all a stack keeps (a PostgreSQL server still
running on data its deleted state folder left outside is stopped first), and `edgeloop up`
refuses to take such left-over data as a new stack's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from edgeloop.compose.stack.state import StackState
from edgeloop.compose.stack.topology import DEFAULT_PORTS
from edgeloop.platform.pgcluster import PostgresCluster
from edgeloop.platform.rayhead import stack_temp_dir
from edgeloop.platform.stackfolders import outside_postgres_data
from edgeloop.testing import free_port

# Only root keeps PostgreSQL's data outside a state folder (and may write where it goes).
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the data moves only for root")


def _edgeloop(state: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_")}
    env["EDGELOOP_STATE_DIR"] = str(state)
    for part in DEFAULT_PORTS:
        env[f"EDGELOOP_{part.upper()}_PORT"] = str(free_port())
    return subprocess.run([sys.executable, "-m", "edgeloop.compose", *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state folder; whatever a test leaves of the stack's folders outside it is removed."""
    folder = tmp_path / "state"
    try:
        yield folder
    finally:
        leftover = outside_postgres_data(folder)
        if leftover.exists():
            PostgresCluster(data_dir=leftover, port=0).stop()
        shutil.rmtree(leftover.parent, ignore_errors=True)
        shutil.rmtree(stack_temp_dir(folder), ignore_errors=True)


def _leave_postgres_data(state: Path) -> Path:
    """Data as an earlier stack of ``state`` left it outside, its state folder deleted."""
    data = outside_postgres_data(state)
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    return data


def test_up_refuses_postgres_data_left_by_a_deleted_state_folder(state: Path) -> None:
    data = _leave_postgres_data(state)

    result = _edgeloop(state, "up", "--timeout", "30")

    assert result.returncode != 0, result.stdout
    assert f"{data.parent} holds the PostgreSQL data of an earlier stack" in result.stderr
    assert "edgeloop down --purge" in result.stderr
    assert not (state / "stack.json").exists() and not (state / "secrets.json").exists()
    assert (data / "PG_VERSION").read_text() == "15\n", "the left-over data was touched"


def test_purge_stops_a_server_left_running_and_deletes_every_folder(state: Path) -> None:
    data = outside_postgres_data(state)
    server = PostgresCluster(data_dir=data, port=free_port(), durable=False)
    server.start()
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "features.log").write_text("a line\n")
    ray_session = stack_temp_dir(state) / "session_2026-12-07_10-00-00_000000_1"
    ray_session.mkdir(parents=True)

    result = _edgeloop(state, "down", "--purge", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped and purged" in result.stdout
    assert f"postgres: stopping the server on {data}" in result.stdout
    for folder in (state, data.parent, stack_temp_dir(state)):
        assert not folder.exists(), result.stdout
        assert f"deleted {folder.resolve()}" in result.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn(), connect_timeout=5).close()


def test_purge_asks_first_and_a_no_keeps_everything(state: Path) -> None:
    (state / "logs").mkdir(parents=True)
    data = _leave_postgres_data(state)

    result = _edgeloop(state, "down", "--purge", stdin="n\n")

    assert result.returncode != 0
    assert "deletes for good" in result.stdout
    assert str(state.resolve()) in result.stdout and str(data.parent) in result.stdout
    assert (state / "logs").is_dir() and (data / "PG_VERSION").exists()


def test_the_data_kept_outside_is_not_in_the_temporary_folder(state: Path) -> None:
    # many systems keep /tmp in memory, or delete its files after days unused
    assert not outside_postgres_data(state).is_relative_to(tempfile.gettempdir())


def test_purge_deletes_the_data_where_an_earlier_release_kept_it(state: Path,
                                                                 tmp_path: Path) -> None:
    earlier = tmp_path / "tmp" / "edgeloop-postgres-0123456789ab" / "data"
    earlier.mkdir(parents=True)
    (earlier / "PG_VERSION").write_text("15\n")
    StackState(postgres_data_dir=str(earlier)).save(state)

    result = _edgeloop(state, "down", "--purge", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert not earlier.parent.exists() and not state.exists(), result.stdout
    assert f"deleted {earlier.parent}" in result.stdout
