"""What a test stack kept outside its state folder (PostgreSQL data, Ray's temp folder) is
removed with it."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from edgeloop.platform.pgcluster import choose_data_dir
from edgeloop.platform.rayhead import stack_temp_dir
from edgeloop.testing import discard_stack_leftovers


def _has_postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not _has_postgres_user(),
                                reason="the data moves only when root runs the cluster")


@needs_root
def test_data_kept_elsewhere_is_removed(tmp_path: Path) -> None:
    state = tmp_path / "state"  # pytest's folders are private: postgres cannot reach them
    data = choose_data_dir(state / "postgres")
    assert not data.is_relative_to(tmp_path), "the data did not move: nothing to test"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    (state / "logs").mkdir()

    discard_stack_leftovers(state)

    assert not data.parent.exists()
    assert (state / "logs").is_dir(), "the state folder itself is the test's to remove"


@needs_root
def test_data_inside_the_state_folder_is_left_alone() -> None:
    root = Path(tempfile.mkdtemp(prefix="edgeloop-stack-state-"))
    try:
        os.chmod(root, 0o755)  # reachable by postgres: the data stays in the state folder
        state = root / "state"
        data = choose_data_dir(state / "postgres")
        assert data == (state / "postgres").resolve()
        data.mkdir(parents=True)

        discard_stack_leftovers(state)

        assert data.is_dir()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_ray_heads_temp_folder_is_removed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ray = stack_temp_dir(state)
    (ray / "session_2026-12-07_10-00-00_000000_1" / "logs").mkdir(parents=True)
    try:
        discard_stack_leftovers(state)
        assert not ray.exists()
    finally:
        shutil.rmtree(ray, ignore_errors=True)
