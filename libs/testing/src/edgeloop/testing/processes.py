"""Services started as real processes (``python -m edgeloop.<service>``) for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from edgeloop.platform.channels import open_blocking_channel
from edgeloop.platform.tls import ClientTLS
from grpc_health.v1 import health_pb2, health_pb2_grpc


def wait_serving(address: str, service: str = "", timeout_s: float = 60.0,
                 tls: ClientTLS | None = None) -> None:
    """Block until the health service at ``address`` answers SERVING for ``service``."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    with open_blocking_channel(address, tls=tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last_error = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                last_error = exc.code().name
            time.sleep(0.2)
    raise TimeoutError(f"{address} not SERVING after {timeout_s}s (last: {last_error})")


class ServiceProcess:
    """A service process with its environment, log file and graceful stop."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.env["EDGELOOP_LISTEN_ADDR"]

    @property
    def client_tls(self) -> ClientTLS | None:
        """TLS for probing this service: its own client-side ``EDGELOOP_TLS_*`` variables."""
        return ClientTLS.from_env(self.env)

    def start(self, wait: bool = True, timeout_s: float = 90.0) -> ServiceProcess:
        """Start the process; with ``wait``, block until it is SERVING.

        A process that does not become SERVING in time is stopped before the error is
        raised: the caller has no handle on it yet and would leak it.
        """
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", self.module], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            try:
                wait_serving(self.address, timeout_s=timeout_s, tls=self.client_tls)
            except BaseException as exc:
                self.stop(timeout_s=10.0)
                if isinstance(exc, TimeoutError):
                    raise TimeoutError(f"{exc}; log:\n{self.log_tail()}") from exc
                raise
        return self

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait, and return the exit code (SIGKILL after ``timeout_s``)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (crash tests)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_entry_point(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` to its end, in this environment without any
    ``EDGELOOP_*`` variable (a newcomer's shell); its output as text."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("EDGELOOP_")}
    return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def help_of(module: str) -> str:
    """What ``python -m <module> --help`` prints; fails the test unless it exits 0 with the
    usage line."""
    result = run_entry_point(module, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"usage: python -m {module}\n"), result.stdout[:200]
    return result.stdout
