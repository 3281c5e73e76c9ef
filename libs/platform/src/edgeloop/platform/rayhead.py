"""A Ray head node (and worker nodes) as separate processes, with token authentication.

``edgeloop up`` runs the head as a part of the local topology and the tests start one the
same way; the trainer (Tune) and the Ray Serve model host join it through its address
(``EDGELOOP_RAY_ADDRESS``). The processes are plain ``ray start --block`` commands, so a
user's own cluster (``ray start --head`` on one machine, ``ray start --address`` on the
others) is the same thing at a larger size.

Token auth: Ray reads ``RAY_AUTH_MODE=token`` and the token from ``RAY_AUTH_TOKEN_PATH``;
every process that joins (driver, worker node, ``ray`` CLI) needs both variables, which
:func:`auth_env` gives. The dashboard asks for the same token.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edgeloop.platform.ports import unused_ports

DEFAULT_OBJECT_STORE_BYTES = 200 * 1024 * 1024
"""Ray's default is 30% of RAM; edgeloop's sweeps and replicas move small arrays."""


SESSIONS_KEPT = 3
"""Session folders a head's temp folder keeps: the one starting and the two before it (their
node and worker logs, for a look after a crash). Older ones go when a head starts."""


def stack_temp_dir(state_dir: Path) -> Path:
    """The temp folder of the Ray head of the stack kept in ``state_dir``:
    ``<tmp>/edgeloop-ray-<id>``, the id a digest of the state folder's path.

    Not inside the state folder: Ray puts Unix sockets in it, whose paths may not exceed 107
    bytes, and a state folder's path can be long. One per state folder, so two stacks on a
    machine keep theirs apart and a stack's restarts prune their own (Ray's default,
    ``/tmp/ray``, kept every session of every start, ~2 MB each, for good).
    """
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"edgeloop-ray-{digest}"


def prune_temp_dir(temp_dir: Path, keep: int = SESSIONS_KEPT) -> list[Path]:
    """Remove all but the newest ``keep`` session folders from a head's ``temp_dir``, and the
    multiprocessing folders (``pymp-*``) that the dashboard's forkserver of an earlier head
    left behind; returns what was removed. Only while no node uses ``temp_dir``.
    """
    # Ray names sessions session_<date>_<time>_<microseconds>_<pid>: by name is by age
    sessions = sorted(p for p in temp_dir.glob("session_*")
                      if p.is_dir() and not p.is_symlink())
    stale = [*sessions[:max(0, len(sessions) - keep)],
             *(p for p in temp_dir.glob("pymp-*") if p.is_dir())]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def ensure_token(token_file: Path) -> str:
    """The token in ``token_file``, created (random, mode 0600) when missing or empty."""
    if not token_file.exists() or not token_file.read_text().strip():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return token_file.read_text().strip()


def workers_run_this_python() -> None:
    """Make this process's Ray drivers start workers with this environment's Python.

    Run under ``uv run`` (``uv run edgeloop up``, ``./run test``), Ray's default wraps
    every worker in ``uv run`` inside a copy of the current folder: it uploads the folder,
    lets uv build a second environment in the copy, starts each worker through uv (the
    trials then import the copy's code, not the trainer's), and refuses to start at all
    when the project is not in the current folder. ``RAY_ENABLE_UV_RUN_RUNTIME_ENV=0``
    turns that off, but Ray reads it once, when it is first imported; so the variable is
    set (unless the user set it) and Ray's copy of it updated. Call before ``ray.init``.
    """
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    from ray._private import ray_constants  # Ray's copy of the variable, read at import

    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = (
        os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"].lower() in ("1", "true"))


def auth_env(token_file: Path) -> dict[str, str]:
    """The variables a Ray process needs to run or join a token-authenticated cluster."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file.resolve()),
        # Workers run this environment's Python directly (Ray would wrap them in `uv run`).
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


SLOW_START_ENV = {
    # The raylet waits this long for its agents' port files (default 30 s; on a busy machine
    # the dashboard agent takes longer to import and the raylet aborts: ray-project/ray#65983)
    "RAY_raylet_start_wait_time_s": "300",
    "RAY_agent_register_timeout_ms": "300000",
    # Worker processes import Ray (and actors TensorFlow) before they register.
    "RAY_worker_register_timeout_seconds": "300",
    # Serve's gRPC proxy imports the TF Serving protos (so all of TensorFlow): tens of
    # seconds on a loaded 2-core machine, where Serve's 5 s readiness check would kill and
    # restart it forever. These are read by the controller and proxies, i.e. the nodes.
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "300",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_GRACEFUL_SHUTDOWN_TIMEOUT_S": "10",
}


NO_IDLE_WORKERS_ENV = {
    # A raylet starts one idle Python worker per CPU ahead of need (~46 MiB each). edgeloop's
    # Ray work is actors (Tune trials, Serve replicas), and Ray starts a fresh process for
    # every actor, so those workers only ever wait: 92 MiB of a 2-core sweep's peak.
    "RAY_prestart_worker_first_driver": "0",
    "RAY_enable_worker_prestart": "0",
}


MALLOC_ARENA_MAX = "MALLOC_ARENA_MAX"
"""glibc's variable for the most malloc arenas a process keeps."""
FEW_MALLOC_ARENAS_ENV = {
    # glibc gives each thread that allocates its own arena (up to 8 per core), and
    # TensorFlow's and Ray's threads each keep freed memory in theirs: two arenas took
    # 30-50 MiB off a 4-trial sweep's peak (trial worker and trainer) on the 2-core VM
    # without slowing it (bench/README, "Fewer malloc arenas"). Read at a process's
    # start, so it is set on the nodes (their workers inherit it) and the trainer.
    MALLOC_ARENA_MAX: "2",
}


def node_env(token_file: Path) -> dict[str, str]:
    """The variables of a head or worker node process: :func:`auth_env`, start-up
    timeouts that tolerate a small, busy machine, no idle workers started ahead, and
    few malloc arenas."""
    return {**auth_env(token_file), **SLOW_START_ENV, **NO_IDLE_WORKERS_ENV,
            **FEW_MALLOC_ARENAS_ENV}


NODE_SIDE_PORT_FLAGS = ("--node-manager-port", "--object-manager-port",
                        "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                        "--runtime-env-agent-port", "--metrics-export-port")
HEAD_SIDE_PORT_FLAGS = ("--ray-client-server-port",)


def side_port_args(args: list[str]) -> list[str]:
    """Explicit free ports for the side servers of the node ``ray start <args>`` starts.

    Ray's fixed defaults (e.g. the client server's 10001, the dashboard agent's 52365)
    collide when several nodes share a host. The ports are chosen when a start attempt
    begins, so a retry after a port was taken meanwhile gets fresh ones, and never equal
    a port ``args`` names already (the GCS's, the dashboard's) or one given explicitly.
    """
    named = {int(args[i + 1]) for i, arg in enumerate(args[:-1])
             if arg.endswith("-port") and args[i + 1].isdigit()}
    flags = [flag for flag in (*NODE_SIDE_PORT_FLAGS,
                               *(HEAD_SIDE_PORT_FLAGS if "--head" in args else ()))
             if flag not in args]
    ports = unused_ports(len(flags), named)
    return [item for flag, port in zip(flags, ports, strict=True) for item in (flag, str(port))]


@dataclass(frozen=True)
class RayHeadConfig:
    """Where a head node listens and what it offers."""

    port: int
    """The GCS port: the cluster's address is ``127.0.0.1:<port>``."""
    dashboard_port: int
    token_file: Path
    num_cpus: int | None = None
    """None: every core of the machine; 0: none (a head that only coordinates)."""
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES
    temp_dir: str = ""
    """Ray's session folder (short: it holds Unix sockets); empty for Ray's default."""
    resources: dict[str, float] = field(default_factory=dict)
    dashboard: bool = True
    """Without it a head starts with ~10 fewer processes (tests on a small machine)."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


START_ATTEMPTS = 4
READY_LINE = "Ray runtime started"
"""What ``ray start`` prints once its node is registered with the GCS."""


REGISTER_WAIT_S = 300.0
"""How long a node's ``ray start`` waits for its raylet to register with the GCS."""


def _ray() -> list[str]:
    # `ray start` through this module (main below): it gives up when its raylet takes longer
    # than a hard-coded 30 s to register with the GCS (ray/_private/node.py; its message
    # names a RAY_raylet_start_wait_time_s setting that nothing reads), which happens on a
    # busy small machine. The supervisor also retries a start that failed all the same.
    return [sys.executable, "-m", "edgeloop.platform.rayhead", "--"]


def _child_running(name: str) -> bool:
    """Whether a live child process of this one is called ``name`` (from /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)
        except OSError:
            continue
        command = fields[0].split("(", 1)[-1]
        state, parent = fields[1].split()[:2]
        if command == name and int(parent) == os.getpid() and state not in ("Z", "X"):
            return True
    return False


def _announce_agent_ports_early() -> None:
    """Write the agents' port files before the raylet starts, from the explicit ports.

    The raylet waits a hard-coded 15 s for the dashboard agent to write its port file and
    aborts when it is late (node_manager.cc; ray-project/ray#65983); on a busy small machine
    the agent needs longer just to import its modules. The ports are fixed on the command
    line (:func:`side_port_args`), so the files can say them at once; the agents write the same
    values when they are up, and a raylet whose agents die still fails as before.
    """
    from ray._private.node import Node
    from ray._raylet import (
        DASHBOARD_AGENT_LISTEN_PORT_NAME,
        METRICS_AGENT_PORT_NAME,
        METRICS_EXPORT_PORT_NAME,
        RUNTIME_ENV_AGENT_PORT_NAME,
        persist_port,
    )

    start_raylet = Node.start_raylet

    def start_raylet_with_known_ports(node: Node, *args: object, **kwargs: object) -> object:
        params = node._ray_params
        for name, port in ((DASHBOARD_AGENT_LISTEN_PORT_NAME, params.dashboard_agent_listen_port),
                           (METRICS_AGENT_PORT_NAME, params.metrics_agent_port),
                           (METRICS_EXPORT_PORT_NAME, params.metrics_export_port),
                           (RUNTIME_ENV_AGENT_PORT_NAME, params.runtime_env_agent_port)):
            if port:
                persist_port(node._session_dir, node._node_id, name, int(port))
        return start_raylet(node, *args, **kwargs)

    Node.start_raylet = start_raylet_with_known_ports


def _patient_ray_cli(args: list[str]) -> None:
    """Ray's CLI with the node-registration lookup retried for up to REGISTER_WAIT_S and
    the node's side servers on ports chosen now (:func:`side_port_args`)."""
    import ray._private.services as services
    from ray.scripts.scripts import main as ray_main

    lookup = services.get_node

    def patient_get_node(*args: object, **kwargs: object) -> object:
        deadline = time.monotonic() + REGISTER_WAIT_S
        while True:
            try:
                return lookup(*args, **kwargs)
            except RuntimeError:
                # A raylet that died (e.g. its agents were too slow) never registers.
                if time.monotonic() > deadline or not _child_running("raylet"):
                    raise
                time.sleep(1.0)

    services.get_node = patient_get_node
    _announce_agent_ports_early()
    sys.argv = ["ray", *args, *side_port_args(args)]
    ray_main()


def _common(num_cpus: int | None, object_store_bytes: int, temp_dir: str,
            resources: dict[str, float]) -> list[str]:
    cpus = (os.cpu_count() or 1) if num_cpus is None else num_cpus
    args = ["--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
            "--num-cpus", str(cpus),
            "--object-store-memory", str(object_store_bytes)]
    if temp_dir:
        args += ["--temp-dir", temp_dir]
    if resources:
        args += ["--resources", json.dumps(resources)]
    return args


def head_command(config: RayHeadConfig) -> list[str]:
    """``ray start --head --block`` on loopback, dashboard included; run with :func:`node_env`."""
    return [*_ray(), "start", "--head", "--port", str(config.port),
            "--include-dashboard", "true" if config.dashboard else "false",
            "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(config.dashboard_port),
            *_common(config.num_cpus, config.object_store_bytes, config.temp_dir,
                     config.resources)]


def worker_command(address: str, num_cpus: int | None, resources: dict[str, float] | None = None,
                   object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
                   temp_dir: str = "") -> list[str]:
    """``ray start --address --block``: a worker node joining the head at ``address``."""
    return [*_ray(), "start", "--address", address,
            *_common(num_cpus, object_store_bytes, temp_dir, resources or {})]


def supervise(command: list[str], attempts: int = START_ATTEMPTS) -> int:
    """Run ``command`` (a ``ray start --block``), again when it fails before its node is up.

    Output goes to this process's stdout; SIGTERM/SIGINT are passed on (and end the
    retries), so the node drains and stops its processes. Returns the last exit code.
    """
    state: dict[str, object] = {"child": None, "stopping": False}

    def forward(signum: int, _frame: object) -> None:
        state["stopping"] = True
        child = state["child"]
        if isinstance(child, subprocess.Popen) and child.poll() is None:
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward)
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = 1
        for attempt in range(1, attempts + 1):
            if state["stopping"]:
                break
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
            state["child"] = child
            started = False
            assert child.stdout is not None
            for raw in child.stdout:
                sys.stdout.buffer.write(raw)
                sys.stdout.flush()
                started = started or READY_LINE.encode() in raw
            code = child.wait()
            if started or code == 0:
                return code
            print(f"edgeloop: ray start failed before its node was up (exit {code}); "
                  f"attempt {attempt} of {attempts}", flush=True)
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def alive_nodes(dashboard_url: str, token: str, timeout_s: float = 5.0) -> list[dict]:
    """The cluster's nodes in state ALIVE, from the dashboard's state API ([] if down)."""
    request = urllib.request.Request(f"{dashboard_url}/api/v0/nodes?limit=1000",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return []
    nodes = body.get("data", {}).get("result", {}).get("result", [])
    return [node for node in nodes if node.get("state") == "ALIVE"]


def dashboard_status(dashboard_url: str, token: str, timeout_s: float = 5.0) -> str:
    """SERVING when the dashboard answers and the head node is registered ALIVE, else DOWN."""
    nodes = alive_nodes(dashboard_url, token, timeout_s)
    return "SERVING" if any(node.get("is_head_node") for node in nodes) else "DOWN"


def wait_head(config: RayHeadConfig, timeout_s: float = 180.0,
              is_dead: object = None) -> None:
    """Block until the head's dashboard answers healthy; TimeoutError after ``timeout_s``.

    ``is_dead`` (a callable) ends the wait early when the head process exited.
    """
    token = ensure_token(config.token_file)
    deadline = time.monotonic() + timeout_s
    while dashboard_status(config.dashboard_url, token) != "SERVING":
        if callable(is_dead) and is_dead():
            raise RuntimeError("the Ray head exited before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray head on {config.address} not ready after {timeout_s}s")
        time.sleep(0.5)


def _own_temp_dir(temp_dir: Path) -> None:
    """A head with a temp folder of its own: older sessions pruned, and the temporary files
    of its processes (the dashboard's forkserver, workers) kept in it as well."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    prune_temp_dir(temp_dir)
    os.environ["TMPDIR"] = str(temp_dir)


def main() -> None:
    """``python -m edgeloop.platform.rayhead -- start ... --block``: ``ray start`` under
    :func:`supervise`, with a patient node registration."""
    args = sys.argv[1:]
    if args[:1] == ["--cli"]:
        _patient_ray_cli(args[1:])
        return
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit("usage: python -m edgeloop.platform.rayhead -- start ... --block")
    if "--head" in args and "--temp-dir" in args:
        _own_temp_dir(Path(args[args.index("--temp-dir") + 1]))
    sys.exit(supervise([sys.executable, "-m", "edgeloop.platform.rayhead", "--cli", *args]))


if __name__ == "__main__":
    main()
