"""An S3 server for tests: ``moto_server`` (MinIO cannot be installed on these machines).

moto's standalone server speaks the S3 REST protocol over HTTP, so the minio client code
under test runs unchanged against it.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from edgeloop.testing.ports import free_port


@contextlib.contextmanager
def moto_s3(timeout_s: float = 30.0) -> Iterator[str]:
    """A moto S3 server on a free loopback port, stopped on exit; yields ``host:port``."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, process, timeout_s)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(port: int, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"moto_server not listening on {port} after {timeout_s}s")
