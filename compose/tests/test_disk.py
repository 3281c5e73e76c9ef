"""`edgeloop status`'s disk lines: one per filesystem holding the stack's data, low below 10 %."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from edgeloop.compose.stack.disk import disk_line, stack_disks
from edgeloop.compose.stack.state import StackState
from edgeloop.platform.diskspace import DiskSpace

GB = 10**9


def test_a_disk_below_a_tenth_free_is_called_low() -> None:
    low = DiskSpace(Path("/data"), 9 * GB, 100 * GB)
    roomy = DiskSpace(Path("/data"), 11 * GB, 100 * GB)
    assert low.low and "LOW" in disk_line(low) and "RETENTION_DAYS" in disk_line(low)
    assert not roomy.low and "LOW" not in disk_line(roomy)
    assert disk_line(roomy).startswith("disk:") and "11.0 GB free of 100.0 GB (11 %) at /data" \
        in disk_line(roomy)


def test_the_state_folder_and_postgres_data_on_one_filesystem_are_one_line(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    (tmp_path / "pg").mkdir()
    StackState(postgres_data_dir=str(tmp_path / "pg")).save(state)

    disks = stack_disks(state)

    assert [d.path for d in disks] == [state.resolve()]
    assert disks[0].total_bytes == shutil.disk_usage(state).total


def test_postgres_data_on_another_filesystem_has_its_own_line(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem to put the data on")
    state = tmp_path / "state"
    StackState(postgres_data_dir=str(other)).save(state)

    disks = stack_disks(state)

    assert [d.path for d in disks] == [state.resolve(), other]
    assert disks[1].total_bytes == shutil.disk_usage(other).total


def test_a_state_folder_not_there_yet_says_nothing(tmp_path: Path) -> None:
    assert stack_disks(tmp_path / "nothing-here") == []
