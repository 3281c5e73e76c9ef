"""A real Ray cluster for tests: a head node and worker nodes as separate processes.

Started exactly as ``edgeloop up`` starts its head (:mod:`edgeloop.platform.rayhead`):
``ray start --head --block`` with token auth, on free loopback ports, a small object store
and a short private temp folder; worker nodes join with ``ray start --address --block``.
Every node is stopped with its whole process session on every path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgeloop.platform import rayhead
from edgeloop.testing.ports import free_port

OBJECT_STORE_BYTES = 80 * 1024 * 1024
NODE_START_S = 240.0
"""A node starts in ~10 s on an idle 2-core machine and takes minutes on a busy one. Kept
under the suite's 600 s test timeout, so a node that never registers fails with its log
instead of a bare timeout."""
WORKER_START_ATTEMPTS = 2
"""A worker node that did not register is started once more: in one clean-clone CI run a
worker's ``ray start`` never registered while the same test passed alone in 70 s."""


class RayNodes:
    """A head node (``num_cpus`` CPUs) plus any worker nodes added; ``stop()`` ends all."""

    def __init__(self, num_cpus: int = 2, dashboard: bool = False) -> None:
        # Ray puts Unix sockets in its temp folder: keep the path short.
        self.root = Path(tempfile.mkdtemp(prefix="elray-"))
        self.config = rayhead.RayHeadConfig(
            port=free_port(), dashboard_port=free_port(), token_file=self.root / "ray_token",
            num_cpus=num_cpus, object_store_bytes=OBJECT_STORE_BYTES,
            temp_dir=str(self.root / "t"), dashboard=dashboard)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def token_file(self) -> Path:
        return self.config.token_file

    def env(self) -> dict[str, str]:
        """What a driver (or any Ray CLI call) needs to join this cluster."""
        return rayhead.auth_env(self.token_file)

    def _spawn(self, command: list[str], name: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **rayhead.node_env(self.token_file)}
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(process)
        return process

    def start(self) -> RayNodes:
        """Start the head and wait until its GCS answers."""
        rayhead.ensure_token(self.token_file)
        head = self._spawn(rayhead.head_command(self.config), "head")
        try:
            self.wait_started(head, "head")
        except BaseException:
            self.stop()
            raise
        return self

    def wait_started(self, process: subprocess.Popen[bytes], name: str,
                     timeout_s: float = NODE_START_S) -> None:
        """Block until the node's ``ray start`` reports its node registered with the GCS."""
        deadline = time.monotonic() + timeout_s
        path = self.root / f"{name}.log"
        while rayhead.READY_LINE not in path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray {name} node did not start "
                                   f"(exit {process.poll()}); log:\n{self.log(name)}")
            time.sleep(0.5)

    def add_worker(self, num_cpus: int, resources: dict[str, float] | None = None,
                   name: str = "worker") -> subprocess.Popen[bytes]:
        """Start a worker node joining the head (``ray start --address``), wait until it is
        registered, and return its process."""
        command = rayhead.worker_command(self.address, num_cpus, resources, OBJECT_STORE_BYTES,
                                         str(self.root / "t"))
        for attempt in range(1, WORKER_START_ATTEMPTS + 1):
            worker = self._spawn(command, name)
            try:
                self.wait_started(worker, name)
                return worker
            except RuntimeError:
                if attempt == WORKER_START_ATTEMPTS:
                    raise
                _kill_session(worker)
                self.processes.remove(worker)
        raise AssertionError("unreachable")

    def log(self, name: str, lines: int = 40) -> str:
        path = self.root / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def session_pids(self, process: subprocess.Popen[bytes]) -> set[int]:
        """Every pid in the session of a node process (its raylet, workers, actors)."""
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getsid(int(entry)) == process.pid:
                        pids.add(int(entry))
        return pids

    def stop(self) -> None:
        """SIGTERM every node (workers first), then SIGKILL what is left of their sessions."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            _kill_session(process)
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _kill_session(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a node's whole process session and reap the node."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait()


@contextlib.contextmanager
def driver(nodes: RayNodes, **init: object) -> Iterator[object]:
    """This process as a Ray driver of ``nodes`` (``ray.init(address)``), shut down after."""
    saved = {key: os.environ.get(key) for key in nodes.env()}
    os.environ.update(nodes.env())
    import ray
    from ray._raylet import AuthenticationTokenLoader, Config

    # An already imported Ray reads the auth variables only on (re)initialisation.
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    ray.shutdown()
    rayhead.workers_run_this_python()
    try:
        yield ray.init(address=nodes.address, log_to_driver=False, **init)
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
