"""The Ray Serve model host as ``edgeloop up`` runs it: ``python -m
edgeloop.gateway.hosts.rayserve``, deployed on the session's Ray cluster, stopped by SIGTERM.

ray.init on the main thread replaces the process's SIGTERM handler with Ray's (SystemExit)
and abseil's failure handler, which dumps a stack trace and aborts a shutdown longer than
3 s with SIGABRT (ray-project/ray#64830). The host sets its own handlers after joining, so
SIGTERM ends it the way it means to: Serve shut down, exit code 0. Its log holds its own
JSON records only (Serve's import gives Serve's logger a plain-text handler of its own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgeloop.gateway.hosts.rayserve import proxy_serves_app
from edgeloop.testing import free_port
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


def _config(model_repo: Path) -> None:
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name="parking", model_platform="tensorflow",
                                        base_path=str(model_repo / "parking"))
    (model_repo / "models.config").write_text(text_format.MessageToString(config))


def test_sigterm_shuts_serve_down_and_exits_cleanly(ray_nodes, model_repo: Path,  # noqa: ANN001
                                                    tmp_path: Path) -> None:
    _config(model_repo)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_")}
    env.update(ray_nodes.env())
    env.update({"EDGELOOP_RAY_ADDRESS": ray_nodes.address,
                "EDGELOOP_MODEL_REPOSITORY": str(model_repo),
                "EDGELOOP_RAYSERVE_GRPC_PORT": str(port),
                "EDGELOOP_RAYSERVE_HTTP_PORT": str(free_port()),
                "EDGELOOP_RAYSERVE_CPUS_PER_REPLICA": "0.5"})
    log = tmp_path / "rayserve.log"
    with log.open("wb") as out:
        host = subprocess.Popen([sys.executable, "-m", "edgeloop.gateway.hosts.rayserve"],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not proxy_serves_app(f"127.0.0.1:{port}"):
            assert host.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the host never served"
            time.sleep(1.0)
        host.send_signal(signal.SIGTERM)
        code = host.wait(timeout=300)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        (model_repo / "models.config").unlink(missing_ok=True)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "SIGTERM received" not in text
    for line in text.splitlines():  # Serve's own lines too are records of the host's log
        assert line.startswith("{") and '"service": "rayserve"' in line, line
    assert not proxy_serves_app(f"127.0.0.1:{port}"), "Serve was shut down"
