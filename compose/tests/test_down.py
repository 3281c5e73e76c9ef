"""`edgeloop down`: the services stop together, then Ray and MLflow together, each after the
wave before it has exited, with stand-in processes for the parts (no timing assumed)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgeloop.compose.stack.local import down
from edgeloop.compose.stack.state import PartRecord, StackState
from edgeloop.compose.stack.topology import Topology

SERVICE_WAVE = ["console", "gateway", "trainer", "features", "registry"]
BACKEND_WAVE = ["ray", "mlflow"]

# On SIGTERM a part notes whether every part of the wave before it had exited, then waits
# (up to 60 s, beyond down's 20 s SIGKILL) for every part of its own wave to be told too:
# parts stopped one after another would be killed waiting, and leave no result.
STAND_IN = """\
import pathlib, signal, sys, time
folder, name = pathlib.Path(sys.argv[1]), sys.argv[2]
wave = sys.argv[3].split(",")
before = [part for part in sys.argv[4].split(",") if part]

def stop(*_):
    after_before = all((folder / f"{part}.exited").exists() for part in before)
    (folder / f"{name}.term").touch()
    deadline = time.monotonic() + 60
    while not all((folder / f"{part}.term").exists() for part in wave):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    together = all((folder / f"{part}.term").exists() for part in wave)
    (folder / f"{name}.result").write_text(f"{together} {after_before}")
    (folder / f"{name}.exited").touch()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
(folder / f"{name}.ready").touch()
while True:
    time.sleep(1)
"""


@pytest.fixture
def stand_ins(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    folder = tmp_path / "marks"
    folder.mkdir()
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for wave, before in ((SERVICE_WAVE, []), (BACKEND_WAVE, SERVICE_WAVE)):
            for name in wave:
                processes[name] = subprocess.Popen(
                    [sys.executable, str(script), str(folder), name, ",".join(wave),
                     ",".join(before)])
        deadline = time.monotonic() + 120
        while not all((folder / f"{name}.ready").exists() for name in processes):
            assert time.monotonic() < deadline, "the stand-in parts did not start"
            time.sleep(0.05)
        yield processes
    finally:
        for process in processes.values():
            process.kill()
            process.wait()


def test_services_stop_together_and_ray_and_mlflow_after_them(
        tmp_path: Path, stand_ins: dict[str, subprocess.Popen[bytes]]) -> None:
    state_dir = tmp_path / "state"
    StackState(parts={name: PartRecord(name, "127.0.0.1:1", process.pid, "")
                      for name, process in stand_ins.items()}).save(state_dir)
    said: list[str] = []

    survivors = down(Topology.from_env(state_dir), said.append)

    assert survivors == []
    for name in stand_ins:
        # The result is written by the SIGTERM handler: a part killed instead has none.
        result = tmp_path / "marks" / f"{name}.result"
        assert result.exists(), f"{name} was killed, not stopped"
        together, after_before = result.read_text().split()
        assert together == "True", f"{name} was stopped apart from the rest of its wave"
        assert after_before == "True", f"{name} was stopped before the wave it comes after"
    assert said == [f"{name}: stopping (pid {stand_ins[name].pid})"
                    for name in [*SERVICE_WAVE, *BACKEND_WAVE]]
    assert StackState.load(state_dir).parts == {}
