"""Per-part scheduling priority: configured per part, applied to the process and inherited."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from edgeloop.compose.stack.processes import has_own_autogroup, set_nice, spawn, stop_tree
from edgeloop.compose.stack.topology import DEFAULT_NICE, Topology


def test_defaults_put_the_answer_path_first_and_training_last(monkeypatch) -> None:
    for part in DEFAULT_NICE:
        monkeypatch.delenv(f"EDGELOOP_{part.upper()}_NICE", raising=False)
    nice = Topology.from_env(Path("state")).nice
    assert nice["gateway"] == min(nice.values())
    assert nice["trainer"] == max(nice.values())
    assert nice["gateway"] < nice["features"] < nice["trainer"]


def test_a_part_moves_with_its_variable_and_bad_values_are_named(monkeypatch) -> None:
    monkeypatch.setenv("EDGELOOP_FEATURES_NICE", "3")
    assert Topology.from_env(Path("state")).nice["features"] == 3
    monkeypatch.setenv("EDGELOOP_TRAINER_NICE", "25")
    with pytest.raises(ValueError, match="EDGELOOP_TRAINER_NICE: must be from -20 to 19"):
        Topology.from_env(Path("state"))
    monkeypatch.setenv("EDGELOOP_TRAINER_NICE", "low")
    with pytest.raises(ValueError, match="EDGELOOP_TRAINER_NICE: not a number"):
        Topology.from_env(Path("state"))


def test_spawned_part_and_its_children_run_at_its_priority(tmp_path: Path) -> None:
    # The child starts a grandchild (as the trainer starts Ray workers) and both sleep.
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "time.sleep(60)")
    pid = spawn([sys.executable, "-c", script], {}, tmp_path / "part.log", nice=15)
    try:
        process = psutil.Process(pid)
        deadline = time.monotonic() + 60
        while not process.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.children(), "the part did not start its child"
        assert process.nice() == 15  # absolute, not relative to ours
        assert all(child.nice() == process.nice() for child in process.children())
    finally:
        stop_tree(pid, timeout_s=5)


def _autogroup(pid: int) -> str:
    # "/autogroup-<id> nice <n>", or empty while the process is in the kernel's default
    # group (its session has no autogroup of its own: e.g. a tree started by init that
    # never called setsid, as a CI runner may be).
    return Path(f"/proc/{pid}/autogroup").read_text().strip()


needs_autogroups = pytest.mark.skipif(not Path("/proc/self/autogroup").exists(),
                                      reason="this kernel has no autogroups")


@needs_autogroups
def test_a_part_weighs_against_the_other_parts_by_its_sessions_autogroup(tmp_path: Path) -> None:
    # Each part leads its own session; with autogroups the kernel shares the CPU between
    # sessions first, so the part's nice must be its session's too.
    ours = _autogroup(os.getpid())
    pid = spawn([sys.executable, "-c", "import time; time.sleep(60)"], {},
                tmp_path / "part.log", nice=12)
    try:
        if not has_own_autogroup(pid):
            pytest.skip("this kernel gave the part's new session no autogroup")
        assert _autogroup(pid).endswith(" nice 12")
        assert _autogroup(os.getpid()) == ours
    finally:
        stop_tree(pid, timeout_s=5)


@needs_autogroups
def test_a_process_in_our_session_leaves_our_autogroup_alone() -> None:
    # Setting the autogroup of a process that shares our session would deprioritize us.
    ours = _autogroup(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        set_nice(child.pid, 9)
        assert psutil.Process(child.pid).nice() == 9
        assert _autogroup(child.pid) == ours
        assert _autogroup(os.getpid()) == ours
    finally:
        child.kill()
        child.wait()
