"""The parts' logs kept to a size: the supervisor copies and truncates them while they write."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from edgeloop.compose.stack.log_rotation import (
    BACKUPS_ENV,
    MAX_BYTES_ENV,
    LogLimits,
    backup,
    rotate_if_large,
)
from edgeloop.compose.stack.processes import alive, spawn, stop_tree
from edgeloop.compose.stack.state import PartRecord, StackState
from edgeloop.compose.stack.supervisor import write_plan
from edgeloop.compose.stack.topology import Topology

# A part that logs all the time: numbered lines, each one write of its own, as fast as it can
WRITER = """
import os, time
n = 0
while True:
    os.write(1, f"line {n:09d}\\n".encode())
    n += 1
    time.sleep(0.0005)
"""


def _numbers(path: Path) -> list[int]:
    data = path.read_bytes()
    assert b"\0" not in data, f"{path.name} has a hole: the writer wrote past a truncation"
    return [int(line.split()[1]) for line in data.decode().splitlines()]


def _wait_for(predicate, timeout_s: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_supervisor_rotates_a_running_parts_log_without_holes(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    log = state_dir / "logs" / "writer.log"
    command = [sys.executable, "-c", WRITER]
    writer = spawn(command, {}, log)  # as `up` starts every part: appending to its log
    supervisor = None
    try:
        StackState(parts={"writer": PartRecord("writer", "-", writer, str(log),
                                               kind="process")}).save(state_dir)
        write_plan(state_dir, {"writer": {"command": command, "env": {}}})
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "edgeloop.compose.stack.supervisor", str(state_dir)],
            env={**os.environ, MAX_BYTES_ENV: "4096", BACKUPS_ENV: "2"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: backup(log, 2).exists())
        supervisor.terminate()
        supervisor.wait(timeout=30)
        size = log.stat().st_size
        _wait_for(lambda: log.stat().st_size > size + 200)  # written to after the last rotation
    finally:
        if supervisor is not None and supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(timeout=30)
        stop_tree(writer, timeout_s=10)
    assert not alive(writer)
    assert not backup(log, 3).exists(), "two copies kept"
    older, newer, current = (_numbers(p) for p in (backup(log, 2), backup(log, 1), log))
    for lines in (older, newer, current):
        assert lines == list(range(lines[0], lines[0] + len(lines))), "lines lost inside a file"
    assert older[-1] < newer[0] and newer[-1] < current[0], "the copies are in order"
    assert backup(log, 1).stat().st_size > 4096, "a log is copied once it is over the limit"


def test_older_copies_move_up_and_the_oldest_goes(tmp_path: Path) -> None:
    log = tmp_path / "part.log"
    limits = LogLimits(max_bytes=1024, backups=3)
    for round_ in range(5):
        log.write_text(f"round {round_}\n" * 200)
        assert rotate_if_large(log, limits)
        assert log.stat().st_size == 0
    assert [backup(log, n).read_text().split("\n")[0] for n in (1, 2, 3)] == \
        ["round 4", "round 3", "round 2"]
    assert not backup(log, 4).exists()
    log.write_text("small\n")
    assert not rotate_if_large(log, limits) and log.read_text() == "small\n"
    assert not rotate_if_large(tmp_path / "missing.log", limits)


def test_limits_come_from_the_environment_and_bad_values_name_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert LogLimits.from_env({}) == LogLimits()
    assert LogLimits.from_env({MAX_BYTES_ENV: "2048", BACKUPS_ENV: "5"}) == LogLimits(2048, 5)
    with pytest.raises(ValueError, match=MAX_BYTES_ENV):
        LogLimits.from_env({MAX_BYTES_ENV: "64M"})
    with pytest.raises(ValueError, match=BACKUPS_ENV):
        LogLimits.from_env({BACKUPS_ENV: "0"})
    monkeypatch.setenv(MAX_BYTES_ENV, "8192")
    monkeypatch.setenv(BACKUPS_ENV, "4")
    assert Topology.from_env(tmp_path).supervisor_env() == {MAX_BYTES_ENV: "8192",
                                                            BACKUPS_ENV: "4"}
    monkeypatch.setenv(BACKUPS_ENV, "none")
    with pytest.raises(ValueError, match=BACKUPS_ENV):  # `up` stops with this message
        Topology.from_env(tmp_path)
