"""Bringing the local stack up and down on embedded defaults.

Order: PostgreSQL (private cluster) → MLflow tracking server → Ray head node (waited
for: the trainer and the Ray Serve model host join it) → with
``EDGELOOP_MODEL_HOST=rayserve`` the Ray Serve model host → registry, features, trainer →
gateway. Every part is a detached process with a log in ``<state>/logs``;
``stack.json`` records what was started so `status` and `down` find it again.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgeloop.compose.stack import bytecode, health, purge, supervisor
from edgeloop.compose.stack.processes import (
    alive,
    check_port_free,
    set_nice,
    spawn,
    stop_tree,
)
from edgeloop.compose.stack.state import PartRecord, StackState, load_or_create_secrets
from edgeloop.compose.stack.topology import CONSOLE, SERVICES, Topology
from edgeloop.platform import rayhead
from edgeloop.platform.pgcluster import PostgresCluster, choose_data_dir
from edgeloop.platform.tls import ClientTLS

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class PartStatus:
    """One row of `edgeloop status`."""

    name: str
    address: str
    pid: int | None
    status: str
    detail: str = ""
    restarts: int = 0


class StackError(RuntimeError):
    """The stack cannot be brought up; the message says what to do."""


def _cluster(topology: Topology, state: StackState) -> PostgresCluster:
    data_dir = Path(state.postgres_data_dir) if state.postgres_data_dir else \
        choose_data_dir(topology.state_dir / "postgres")
    return PostgresCluster(data_dir=data_dir, port=topology.ports["postgres"])


# Ports a part opens besides its own: they are taken exactly when that part runs.
_PORT_OWNERS = {"webhook": "trainer", "ray_dashboard": "ray", "ray_gcs": "ray",
                "rayserve_grpc": "ray", "rayserve_http": "ray"}
RAY_STOP_S = 40.0
"""A head node drains for up to 30 s on SIGTERM before it stops its processes."""


def _check_ports(topology: Topology, state: StackState) -> None:
    for part, port in topology.ports.items():
        record = state.parts.get(_PORT_OWNERS.get(part, part))
        if record and alive(record.pid):
            continue
        if part == "postgres" and state.postgres_data_dir and \
                _cluster(topology, state).is_running():
            continue
        check_port_free(part, port)


def _check_no_orphaned_data(state_dir: Path) -> None:
    if data := purge.orphaned_postgres_data(state_dir):
        raise StackError(
            f"{data.parent} holds the PostgreSQL data of an earlier stack of {state_dir}, "
            "whose state folder was deleted (its MLflow runs, images, tokens and certificates "
            "with it), so a new stack cannot take that database as its own: `edgeloop down "
            "--purge` deletes it (and any server still running on it); move the folder away "
            "to keep it")


def _check_same_transport(state: StackState, tls_env: dict[str, str]) -> None:
    running = [name for name, record in state.parts.items()
               if record.kind == "grpc" and alive(record.pid)]
    if running and bool(state.tls) != bool(tls_env):
        now, asked = ("TLS", "off") if state.tls else ("plaintext", "on")
        raise StackError(f"the running stack uses {now} ({', '.join(running)}); EDGELOOP_TLS="
                         f"{asked} needs `edgeloop down` first")


def _start_postgres(topology: Topology, state: StackState, progress: Progress) -> None:
    cluster = _cluster(topology, state)
    progress(f"postgres: starting on {topology.address('postgres')} (TimescaleDB "
             f"{'found' if cluster.timescaledb else 'not installed: plain PostgreSQL'})")
    if not cluster.data_dir.is_relative_to(topology.state_dir.resolve()):
        progress(f"postgres: its data in {cluster.data_dir}: the postgres user cannot reach "
                 "the state folder (`edgeloop down --purge` deletes both)")
    cluster.start()
    if cluster.pid():
        # The postmaster's backends are forked from it after this: they inherit the value.
        set_nice(cluster.pid(), topology.nice["postgres"])
    cluster.ensure_database("edgeloop")
    state.postgres_data_dir = str(cluster.data_dir)
    state.postgres_port = cluster.port
    state.parts["postgres"] = PartRecord("postgres", topology.address("postgres"), cluster.pid(),
                                         str(cluster.log_file), kind="postgres",
                                         url=topology.database_url)


def _start_process(state: StackState, record: PartRecord, command: list[str],
                   env: dict[str, str], plan: dict[str, dict], nice: int = 0) -> None:
    plan[record.name] = {"command": command, "env": env, "nice": nice}
    existing = state.parts.get(record.name)
    if existing and alive(existing.pid):
        return
    if existing:  # died (and the supervisor had not restarted it): start it again
        record.restarts = existing.restarts + 1
        record.last_restart = datetime.now(UTC).isoformat(timespec="seconds")
        stop_tree(existing.pid, timeout_s=5)
    record.pid = spawn(command, env, Path(record.log), nice=nice)
    state.parts[record.name] = record


def _extra_gateways(state: StackState) -> list[str]:
    return sorted((name for name in state.parts if name.startswith("gateway-")),
                  key=lambda name: int(name.rpartition("-")[2]))


def _with_extra_gateways(services: tuple[str, ...], state: StackState) -> list[str]:
    """``services`` with every extra gateway process the state records after ``gateway``."""
    names: list[str] = []
    for service in services:
        names += [service, *(_extra_gateways(state) if service == "gateway" else [])]
    return names


def _stop_extra_gateways(state: StackState, topology: Topology, progress: Progress) -> None:
    """Gateway processes beyond ``EDGELOOP_GATEWAY_PROCESSES`` (a smaller number than the
    last `up`) are stopped; their spools are kept and replayed when the number grows again."""
    for name in _extra_gateways(state):
        if name not in topology.gateway_parts:
            record = state.parts.pop(name)
            progress(f"{name}: stopping (EDGELOOP_GATEWAY_PROCESSES={topology.gateway_processes})")
            if record.pid:
                stop_tree(record.pid, timeout_s=20.0)


def _probe(record: PartRecord, tls: ClientTLS | None = None) -> str:
    if record.kind == "ray":
        token_file = Path(record.token_file)
        token = token_file.read_text().strip() if token_file.is_file() else ""
        return rayhead.dashboard_status(record.url, token)
    if record.kind == "serve":
        return health.serve_status(record.address)
    if record.kind == "http":
        return health.http_status(record.url)
    if record.kind == "postgres":
        return health.postgres_status(record.url)
    if record.kind == "process":
        return "SERVING" if alive(record.pid) else "STOPPED"
    return health.grpc_status(record.address, tls=tls)


def up(topology: Topology, progress: Progress, timeout_s: float = 180.0) -> list[PartStatus]:
    """Start every part that is not running yet (a dead one again) and wait until all are
    healthy; the supervisor then restarts any part that dies."""
    if hint := bytecode.advice():
        progress(hint)
    with supervisor.locked(topology.state_dir):
        _check_no_orphaned_data(topology.state_dir)
        state = StackState.load(topology.state_dir)
        _check_ports(topology, state)
        secrets = load_or_create_secrets(topology.state_dir)
        tls = topology.tls
        _check_same_transport(state, tls.client_env() if tls else {})
        state.tls = tls.client_env() if tls else {}
        logs = topology.folder("logs")
        plan: dict[str, dict] = {"postgres": {"nice": topology.nice["postgres"]}}
        _start_postgres(topology, state, progress)
        mlflow = PartRecord("mlflow", topology.address("mlflow"), None, str(logs / "mlflow.log"),
                            kind="http", url=f"{topology.mlflow_uri}/health")
        _start_process(state, mlflow, topology.mlflow_command(), topology.mlflow_env(), plan,
                       topology.nice["mlflow"])
        _start_ray(topology, state, progress, timeout_s, plan)
        if topology.model_host == "rayserve":
            _start_modelserver(topology, state, progress, plan)
        for service in SERVICES:
            parts = topology.gateway_parts if service == "gateway" else [service]
            for part in parts:
                record = PartRecord(part, topology.address(service), None,
                                    str(logs / f"{part}.log"))
                progress(f"{part}: starting on {record.address}")
                env = (topology.gateway_env(part, secrets) if service == "gateway"
                       else topology.service_env(service, secrets))
                _start_process(state, record, [sys.executable, "-m", f"edgeloop.{service}"],
                               env, plan, topology.nice[service])
        _stop_extra_gateways(state, topology, progress)
        console = PartRecord(CONSOLE, topology.address(CONSOLE), None, str(logs / "console.log"),
                             kind="http", url=f"{topology.console_url}/healthz")
        progress(f"console: starting on {topology.console_url}")
        _start_process(state, console, [sys.executable, "-m", "edgeloop.console"],
                       topology.console_env(secrets), plan, topology.nice[CONSOLE])
        supervisor.write_plan(topology.state_dir, plan)
        _start_process(state, PartRecord("supervisor", "-", None, str(logs / "supervisor.log"),
                                         kind="process"),
                       [sys.executable, "-m", "edgeloop.compose.stack.supervisor",
                        str(topology.state_dir)], topology.supervisor_env(), {})
        state.save(topology.state_dir)
    return _wait_healthy(state, topology.state_dir, progress, timeout_s)


def _start_ray(topology: Topology, state: StackState, progress: Progress,
               timeout_s: float, plan: dict[str, dict]) -> None:
    """The Ray head node, waited for: the trainer and the model host join it at start."""
    head = topology.ray_head
    record = PartRecord("ray", head.address, None, str(topology.folder("logs") / "ray.log"),
                        kind="ray", url=head.dashboard_url, token_file=str(head.token_file))
    progress(f"ray: starting the head node on {head.address} (dashboard {head.dashboard_url})")
    command, env = topology.ray_head_command()
    _start_process(state, record, command, env, plan, topology.nice["ray"])
    state.save(topology.state_dir)
    record = state.parts["ray"]
    status = health.wait_until(lambda: _probe(record), timeout_s,
                               lambda: not alive(record.pid))
    if status != "SERVING":
        raise StackError(f"the Ray head node did not start ({status}); see {record.log}")


def _start_modelserver(topology: Topology, state: StackState, progress: Progress,
                       plan: dict[str, dict]) -> None:
    """The Ray Serve model host: deploys the application on the head, then waits."""
    record = PartRecord("modelserver", topology.address("rayserve_grpc"), None,
                        str(topology.folder("logs") / "modelserver.log"), kind="serve")
    progress(f"modelserver: Ray Serve with {topology.rayserve_replicas} replica(s), "
             f"gRPC on {record.address}")
    command, env = topology.modelserver_command()
    _start_process(state, record, command, env, plan, topology.nice["modelserver"])


CRASH_LOOP_RESTARTS = 3
"""Restarts while `up` waits after which a part counts as failing, not as starting."""


def _wait_healthy(state: StackState, state_dir: Path, progress: Progress,
                  timeout_s: float) -> list[PartStatus]:
    deadline = time.monotonic() + timeout_s
    tls = ClientTLS.from_env(state.tls)
    rows = []
    for name, first in state.parts.items():
        def current(name: str = name, first: PartRecord = first) -> PartRecord:
            # The supervisor may have started the part again under a new pid.
            return StackState.load(state_dir).parts.get(name, first)

        def crash_looping(first: PartRecord = first, current=current) -> bool:  # noqa: ANN001
            now = current()
            return (now.kind != "postgres" and not alive(now.pid)
                    and now.restarts >= first.restarts + CRASH_LOOP_RESTARTS)

        remaining = max(1.0, deadline - time.monotonic())
        status = health.wait_until(lambda current=current: _probe(current(), tls), remaining,
                                   crash_looping)
        record = current()
        progress(f"{name}: {status}" + (f" (restarted {record.restarts - first.restarts}x)"
                                        if record.restarts > first.restarts else ""))
        rows.append(PartStatus(name, record.address, record.pid, status, record.log,
                               record.restarts))
    return rows


def status(topology: Topology) -> list[PartStatus]:
    """Health of every part recorded by `up`."""
    state = StackState.load(topology.state_dir)
    tls = ClientTLS.from_env(state.tls)
    rows = []
    for record in state.parts.values():
        running = alive(record.pid) if record.kind != "postgres" else True
        current = _probe(record, tls) if running else "STOPPED"
        rows.append(PartStatus(record.name, record.address, record.pid, current, record.log,
                               record.restarts))
    return rows


def _stop_together(records: list[PartRecord], progress: Progress) -> list[int]:
    """Stop the parts' process trees at once; return the pids that survived."""
    for record in records:
        progress(f"{record.name}: stopping (pid {record.pid})")
    if not records:
        return []
    with ThreadPoolExecutor(max_workers=len(records)) as pool:
        stopped = pool.map(lambda record: stop_tree(
            record.pid, timeout_s=RAY_STOP_S if record.name == "ray" else 20.0,
            root_first=record.name != "mlflow"), records)
        return [pid for survivors in stopped for pid in survivors]


def down(topology: Topology, progress: Progress) -> list[int]:
    """Stop every part `up` started (services first, PostgreSQL last); return surviving pids.

    The services stop together, then Ray, the model server and MLflow together: each waits
    out its own drain (a service's grace for its open streams, Ray's node shutdown), so one
    after another they took the sum of those waits (about 25 s for an idle stack) where
    together they take the longest. Nothing is lost by the overlap: a gateway whose
    features service stops first keeps the frames in its spool for the next start.
    """
    state = StackState.load(topology.state_dir)
    survivors: list[int] = []
    watcher = state.parts.pop("supervisor", None)
    if watcher and watcher.pid:  # first, so that nothing is started again while we stop
        progress(f"supervisor: stopping (pid {watcher.pid})")
        survivors += stop_tree(watcher.pid)
    state = StackState.load(topology.state_dir)  # the supervisor's last restarts
    state.parts.pop("supervisor", None)
    for wave in ([CONSOLE, *reversed(_with_extra_gateways(SERVICES, state))],
                 ["modelserver", "ray", "mlflow"]):
        records = [record for name in wave
                   if (record := state.parts.pop(name, None)) and record.pid]
        survivors += _stop_together(records, progress)
    if state.postgres_data_dir:
        progress("postgres: stopping")
        _cluster(topology, state).stop()
        state.parts.pop("postgres", None)
    state.save(topology.state_dir)
    return survivors
