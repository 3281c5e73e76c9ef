"""`edgeloop operators` and EDGELOOP_OPERATOR_TOKEN against a real registry process.

The registry runs as shipped (``python -m edgeloop.registry``) on the private test
PostgreSQL and a real MLflow SQLite store, like ``test_cli_registry.py``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from edgeloop.compose.cli import cli
from edgeloop.testing import ServiceProcess, free_port

ADMIN = "cli-operators-admin-token-0123456789"


@pytest.fixture(scope="module")
def registry(pg_cluster: Any) -> Iterator[dict[str, str]]:
    folder = Path(tempfile.mkdtemp(prefix="edgeloop-cli-operators-"))
    process = ServiceProcess("edgeloop.registry", {
        "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "EDGELOOP_DATABASE_URL": pg_cluster.ensure_database(f"cliop_{uuid.uuid4().hex[:10]}"),
        "EDGELOOP_MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "EDGELOOP_ADMIN_TOKEN": ADMIN, "EDGELOOP_MODEL_REPOSITORY": str(folder / "repository"),
        "EDGELOOP_LOG_FORMAT": "text", "EDGELOOP_LOG_LEVEL": "DEBUG",
    }, folder / "registry.log")
    try:
        process.start(timeout_s=240)
        yield {"address": process.address, "log": str(folder / "registry.log")}
    finally:
        process.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _run(registry: dict[str, str], *args: str, operator_token: str | None = None) -> Any:
    """The CLI with the admin token, and with ``operator_token`` as EDGELOOP_OPERATOR_TOKEN."""
    env = {"EDGELOOP_REGISTRY_ADDR": registry["address"], "EDGELOOP_ADMIN_TOKEN": ADMIN,
           "EDGELOOP_OPERATOR_TOKEN": operator_token, "COLUMNS": "200"}
    return CliRunner().invoke(cli, list(args), env=env)


def _token(result: Any) -> str:
    assert result.exit_code == 0, result.output
    assert "shown only this once" in result.stderr
    return result.stdout.split("token:")[1].split()[0]


def test_operators_add_list_and_their_changes_are_recorded_as_theirs(
        registry: dict[str, str]) -> None:
    alice = _token(_run(registry, "operators", "add", "alice", "--role", "admin"))
    bob = _token(_run(registry, "operators", "add", "bob"))  # read by default
    assert len(alice) >= 40 and alice != bob
    listed = _run(registry, "operators", "list", "--output", "json")
    assert listed.exit_code == 0, listed.output
    assert [(o["operator"], o["role"], o["state"]) for o in json.loads(listed.stdout)
            if o["operator"] in ("alice", "bob")] == [("alice", "admin", "active"),
                                                     ("bob", "read", "active")]
    assert alice not in listed.stdout and bob not in listed.stdout

    assert _run(registry, "operators", "whoami").stdout.strip() == "admin (admin)"
    assert _run(registry, "operators", "whoami",
                operator_token=alice).stdout.strip() == "operator:alice (admin)"
    created = _run(registry, "deployments", "create", "parking", operator_token=alice)
    assert created.exit_code == 0, created.output
    assert _run(registry, "deployments", "activate", "parking").exit_code == 0
    refused = _run(registry, "deployments", "activate", "parking", "--off", operator_token=bob)
    assert refused.exit_code != 0 and "PERMISSION_DENIED" in refused.output
    history = _run(registry, "deployments", "history", "parking", "--output", "json",
                   operator_token=bob)
    assert history.exit_code == 0, history.output
    assert [(r["action"], r["actor"]) for r in reversed(json.loads(history.stdout))] == [
        ("create", "operator:alice"), ("activate", "admin")]
    assert alice not in Path(registry["log"]).read_text()
    assert bob not in Path(registry["log"]).read_text()


def test_operators_revoke_and_rotate_refuse_the_old_tokens(registry: dict[str, str]) -> None:
    carol = _token(_run(registry, "operators", "add", "carol", "--role", "admin"))
    assert _run(registry, "devices", "list", operator_token=carol).exit_code == 0
    rotated = _token(_run(registry, "operators", "rotate", "carol"))
    old = _run(registry, "devices", "list", operator_token=carol)
    assert old.exit_code != 0 and "UNAUTHENTICATED" in old.output and carol not in old.output
    assert _run(registry, "devices", "list", operator_token=rotated).exit_code == 0
    revoked = _run(registry, "operators", "revoke", "carol")
    assert revoked.exit_code == 0 and "revoked carol" in revoked.stdout
    after = _run(registry, "devices", "list", operator_token=rotated)
    assert after.exit_code != 0 and "UNAUTHENTICATED" in after.output
    assert "carol" not in _run(registry, "operators", "list").stdout
    every = _run(registry, "operators", "list", "--all", "--output", "json")
    assert ("carol", "revoked") in [(o["operator"], o["state"]) for o in json.loads(every.stdout)]
