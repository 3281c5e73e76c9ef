"""`edgeloop devices|deployments|models` against a real registry process on loopback.

The registry runs as shipped (``python -m edgeloop.registry``) on the private test
PostgreSQL and a real MLflow SQLite store. Model versions are created directly in
MLflow from a tiny SavedModel folder (the registry's own tests cover registration from
a run); the registry publishes them when the CLI promotes them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from edgeloop.compose.cli import cli
from edgeloop.platform.gateway_status import DeviceContact, GatewayStatus, write_status
from edgeloop.testing import ServiceProcess, free_port

ADMIN = "cli-admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def registry(pg_cluster: Any) -> Iterator[dict[str, str]]:
    folder = Path(tempfile.mkdtemp(prefix="edgeloop-cli-registry-"))
    mlflow_uri = f"sqlite:///{folder / 'mlflow.db'}"
    process = ServiceProcess("edgeloop.registry", {
        "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "EDGELOOP_DATABASE_URL": pg_cluster.ensure_database(f"cli_{uuid.uuid4().hex[:10]}"),
        "EDGELOOP_MLFLOW_TRACKING_URI": mlflow_uri, "EDGELOOP_ADMIN_TOKEN": ADMIN,
        "EDGELOOP_MODEL_REPOSITORY": str(folder / "repository"), "EDGELOOP_LOG_FORMAT": "text",
    }, folder / "registry.log")
    try:
        process.start(timeout_s=240)
        yield {"address": process.address, "mlflow_uri": mlflow_uri,
               "log": str(folder / "registry.log")}
    finally:
        process.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _run(registry: dict[str, str], *args: str, token: str = ADMIN,
         state_dir: Path | None = None) -> Any:
    env = {"EDGELOOP_REGISTRY_ADDR": registry["address"], "EDGELOOP_ADMIN_TOKEN": token,
           "COLUMNS": "200"}
    if state_dir is not None:
        env["EDGELOOP_STATE_DIR"] = str(state_dir)
    return CliRunner().invoke(cli, list(args), env=env)


def test_devices_add_list_rotate_revoke(registry: dict[str, str]) -> None:
    added = _run(registry, "devices", "add", "rear car", "--id", "car-7")
    assert added.exit_code == 0, added.output
    token = added.stdout.split("token:")[1].split()[0]
    assert len(token) >= 40
    listed = _run(registry, "devices", "list")
    assert "car-7" in listed.stdout and "rear car" in listed.stdout and token not in listed.stdout
    rotated = _run(registry, "devices", "rotate", "car-7")
    assert rotated.exit_code == 0 and token not in rotated.stdout
    revoked = _run(registry, "devices", "revoke", "car-7")
    assert revoked.exit_code == 0 and "revoked car-7" in revoked.stdout
    assert "car-7" not in _run(registry, "devices", "list").stdout
    assert "revoked" in _run(registry, "devices", "list", "--all").stdout
    assert token not in Path(registry["log"]).read_text()


def test_devices_list_shows_the_local_gateways_contacts(registry: dict[str, str],
                                                        tmp_path: Path) -> None:
    """Two gateway processes' status files: car-21 reconnected to the second one; car-22 left."""
    for device_id in ("car-21", "car-22"):
        assert _run(registry, "devices", "add", "--id", device_id).exit_code == 0
    now = time.time()
    status = GatewayStatus(gateway_id="gw", pid=1, written_at=now - 1, stopped=False,
                           backlog_bytes=0, max_bytes=1 << 30, disk_refused=False,
                           not_recorded_since=None, answered_not_recorded=0, forwarded_at=now,
                           forward_failing_since=None, interval_s=2.0)
    for folder, devices in (
            ("spool", (DeviceContact("car-21", 0, now - 300, now - 60, now - 61, 10),
                       DeviceContact("car-22", 0, now - 900, now - 600, now - 601, 5))),
            ("spool-2", (DeviceContact("car-21", 1, now - 59, None, now - 0.5, 200, 4.04,
                                       -1800.0),))):
        (tmp_path / folder).mkdir()
        write_status(tmp_path / folder, dataclasses.replace(status, devices=devices))
    listed = json.loads(_run(registry, "devices", "list", "-o", "json",
                             state_dir=tmp_path).stdout)
    rows = {d["device"]: d for d in listed}
    assert rows["car-21"]["streams"] == 1 and rows["car-22"]["streams"] == 0
    assert rows["car-21"]["fps"] == 4.0 and rows["car-22"]["fps"] == 0
    assert rows["car-21"]["last_contact"] == _iso(now - 0.5)
    assert rows["car-22"]["last_contact"] == _iso(now - 600)
    assert rows["car-21"]["clock_offset_s"] == -1800.0 and rows["car-22"]["clock_offset_s"] is None
    others = [d for name, d in rows.items() if name not in {"car-21", "car-22"}]
    assert all(d["streams"] == 0 and d["last_contact"] is None for d in others)
    table = _run(registry, "devices", "list", state_dir=tmp_path).stdout
    assert "last_contact" in table and "30 min behind" in table
    assert "last_contact" not in _run(registry, "devices", "list",
                                      state_dir=tmp_path / "no-stack").stdout


def _iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_deployments_create_activate_assign_history(registry: dict[str, str]) -> None:
    created = _run(registry, "deployments", "create", "parking", "--model", "distance",
                   "--select", "@champion", "--strategy", "canary", "--challenger", "latest",
                   "--canary-fraction", "0.2")
    assert created.exit_code == 0, created.output
    assert "parking" in created.stdout and "canary" in created.stdout
    bad = _run(registry, "deployments", "create", "broken", "--model", "distance",
               "--select", "latest", "--strategy", "canary", "--challenger", "latest")
    assert bad.exit_code != 0
    assert "INVALID_ARGUMENT" in bad.output and "deployment.canary_fraction" in bad.output
    assert _run(registry, "deployments", "activate", "parking").exit_code == 0
    assert _run(registry, "devices", "add", "--id", "car-8").exit_code == 0
    assigned = _run(registry, "deployments", "assign", "parking", "car-8")
    assert assigned.exit_code == 0 and "car-8 -> parking" in assigned.stdout
    listed = _run(registry, "deployments", "list", "--active-only")
    assert "parking" in listed.stdout and "yes" in listed.stdout
    history = _run(registry, "deployments", "history", "parking")
    actions = [a for a in ("create", "activate", "assign") if a in history.stdout]
    assert actions == ["create", "activate", "assign"]


def _saved_model(folder: Path) -> Path:
    """A tiny SavedModel with the serving signature (image uint8 -> distance_mm float32)."""
    import tensorflow as tf

    class Constant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                    name="image")])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"distance_mm": tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2, 3])}

    module = Constant()
    tf.saved_model.save(module, str(folder / "saved_model"),
                        signatures={"serving_default": module.serve})
    return folder


def test_models_list_promote_rollback(registry: dict[str, str], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    source = _saved_model(tmp_path)
    client = MlflowClient(tracking_uri=registry["mlflow_uri"], registry_uri=registry["mlflow_uri"])
    client.create_registered_model("wall")
    for _ in range(2):
        client.create_model_version("wall", str(source), tags={"sweep_id": "s9"})
    listed = _run(registry, "models", "list", "wall")
    assert listed.exit_code == 0, listed.output
    assert "sweep_id=s9" in listed.stdout
    first = _run(registry, "models", "promote", "wall", "1")
    assert first.exit_code == 0 and "no champion yet" in first.stdout
    refused = _run(registry, "models", "promote", "wall", "2")
    assert refused.exit_code == 1 and "no holdout evaluation" in refused.stdout
    forced = _run(registry, "models", "promote", "wall", "2", "--force")
    assert forced.exit_code == 0 and "1 -> 2" in forced.stdout
    back = _run(registry, "models", "rollback", "wall")
    assert back.exit_code == 0 and "2 -> 1" in back.stdout
    assert "champion" in _run(registry, "models", "list", "wall").stdout


def test_clear_errors(registry: dict[str, str]) -> None:
    wrong = _run(registry, "devices", "list", token="wrong-token-wrong-token")
    assert wrong.exit_code != 0 and "UNAUTHENTICATED" in wrong.output
    missing = _run(registry, "devices", "revoke", "ghost")
    assert missing.exit_code != 0 and "NOT_FOUND" in missing.output
    selector = _run(registry, "deployments", "create", "x", "--model", "m", "--select", "champion")
    unknown = _run(registry, "models", "list", "no-such-model")
    assert unknown.exit_code == 1 and "no model 'no-such-model' is registered" in unknown.output
    assert selector.exit_code != 0 and "@alias" in selector.output


def test_listings_as_json_and_at_80_columns(registry: dict[str, str]) -> None:
    import json

    assert _run(registry, "devices", "add", "a robot with a rather long name",
                "--id", "car-with-a-long-identifier-0042").exit_code == 0
    assert _run(registry, "deployments", "create", "narrow-parking", "--model", "distance",
                "--select", "@champion", "--description", "x").exit_code == 0
    devices = json.loads(_run(registry, "devices", "list", "-o", "json").stdout)
    mine = next(d for d in devices if d["device"] == "car-with-a-long-identifier-0042")
    assert mine["name"] == "a robot with a rather long name" and mine["state"] == "active"
    assert mine["created"].endswith("Z")
    deployments = json.loads(_run(registry, "deployments", "list", "--output", "json").stdout)
    parking = next(d for d in deployments if d["name"] == "narrow-parking")
    assert parking["selector"] == "@champion" and parking["active"] is False
    history = json.loads(_run(registry, "deployments", "history", "narrow-parking",
                              "-o", "json").stdout)
    assert [h["action"] for h in history] == ["create"] and history[0]["actor"]
    # Piped at 80 columns: no table squeezed to a word per line; a record per item instead.
    for args in (("devices", "list"), ("deployments", "list"), ("deployments", "history")):
        result = CliRunner().invoke(cli, list(args), env={
            "EDGELOOP_REGISTRY_ADDR": registry["address"], "EDGELOOP_ADMIN_TOKEN": ADMIN,
            "COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), result.stdout
        # Every value stays whole on its line (a folded table would split the id).
        if args[0] == "devices":
            assert any(line.split() == ["device:", "car-with-a-long-identifier-0042"]
                       for line in lines), result.stdout
