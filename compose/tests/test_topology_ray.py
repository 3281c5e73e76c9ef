"""The local topology's Ray parts: one head for Tune and Serve, and the Ray Serve model host
option, as environment given to each part (no process is started here; `test_stack.py`
brings the stack up for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgeloop.compose.stack import health
from edgeloop.compose.stack.topology import Topology
from edgeloop.testing import free_port

SECRETS = {"admin_token": "a" * 24, "read_token": "r" * 24, "webhook_secret": "w" * 24,
           "trainer_token": "t" * 24}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EDGELOOP_MODEL_HOST", "EDGELOOP_RAYSERVE_REPLICAS", "EDGELOOP_RAY_GCS_PORT",
                 "EDGELOOP_RAYSERVE_GRPC_PORT", "EDGELOOP_RAY_NUM_CPUS"):
        monkeypatch.delenv(name, raising=False)


def test_trainer_joins_the_head_and_the_token_stays_in_the_state_folder(tmp_path: Path,
                                                                         monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("EDGELOOP_RAY_GCS_PORT", "61379")
    topology = Topology.from_env(tmp_path)
    trainer = topology.service_env("trainer", SECRETS)
    assert trainer["EDGELOOP_RAY_ADDRESS"] == "127.0.0.1:61379"
    assert trainer["EDGELOOP_RAY_AUTH_TOKEN_FILE"] == str(tmp_path / "ray_token")
    command, env = topology.ray_head_command()
    assert (tmp_path / "ray_token").read_text().strip()
    assert env["RAY_AUTH_TOKEN_PATH"] == str((tmp_path / "ray_token").resolve())
    assert command[command.index("--port") + 1] == "61379"
    assert command[command.index("--dashboard-port") + 1] == str(topology.ports["ray_dashboard"])
    assert "rayserve_grpc" not in topology.ports, "no Serve ports without the Serve host"
    assert topology.service_env("gateway", SECRETS)["EDGELOOP_MODEL_HOST"] == "embedded"


def test_rayserve_host_wires_gateway_and_registry_to_serve(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("EDGELOOP_MODEL_HOST", "rayserve")
    monkeypatch.setenv("EDGELOOP_RAYSERVE_REPLICAS", "3")
    monkeypatch.setenv("EDGELOOP_RAYSERVE_GRPC_PORT", "61054")
    topology = Topology.from_env(tmp_path)
    gateway = topology.service_env("gateway", SECRETS)
    assert gateway["EDGELOOP_MODEL_HOST"] == "tfserving"
    assert gateway["EDGELOOP_TFSERVING_ADDR"] == "127.0.0.1:61054"
    assert topology.service_env("registry", SECRETS)["EDGELOOP_TFSERVING_ADDR"] == \
        "127.0.0.1:61054"
    command, env = topology.modelserver_command()
    assert command[-1] == "edgeloop.gateway.hosts.rayserve"
    assert env["EDGELOOP_RAYSERVE_REPLICAS"] == "3"
    assert env["EDGELOOP_RAY_ADDRESS"] == topology.ray_head.address
    assert env["EDGELOOP_MODEL_REPOSITORY"] == str(tmp_path / "models")


@pytest.mark.parametrize(("name", "value"), [("EDGELOOP_MODEL_HOST", "tfserving"),
                                             ("EDGELOOP_RAYSERVE_REPLICAS", "0")])
def test_bad_model_host_settings_name_the_variable(tmp_path: Path, monkeypatch, name: str,  # noqa: ANN001
                                                   value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        Topology.from_env(tmp_path)


def test_serve_probe_is_down_without_a_proxy() -> None:
    assert health.serve_status(f"127.0.0.1:{free_port()}", timeout_s=0.5) == "DOWN"
