"""Ray Serve for scale-out: TF Serving's protocol on Ray Serve's gRPC proxy.

Each replica runs :class:`ServingProtocol` over its own :class:`EmbeddedHost` and the
shared model repository (every replica follows ``models.config`` by itself), and Ray
Serve's gRPC proxy serves ``tensorflow.serving.PredictionService`` and ``ModelService``
on one port. A gateway reaches it with ``EDGELOOP_MODEL_HOST=tfserving`` and
``EDGELOOP_TFSERVING_ADDR=<proxy host>:<grpc port>``, exactly as it reaches TF Serving;
the registry can reload it the same way too.

It joins a running Ray cluster (``EDGELOOP_RAY_ADDRESS``: the local topology's head node,
or a bigger cluster) and stays up until SIGTERM, when it deletes the application::

    EDGELOOP_RAY_ADDRESS=127.0.0.1:6379 EDGELOOP_MODEL_REPOSITORY=/models \
    EDGELOOP_RAYSERVE_GRPC_PORT=9000 EDGELOOP_RAYSERVE_REPLICAS=2 \
        python -m edgeloop.gateway.hosts.rayserve

``edgeloop up`` with ``EDGELOOP_MODEL_HOST=rayserve`` runs exactly that as its
``modelserver`` part. Tested end to end through Serve's real gRPC proxy on a Ray head
node process (tests/hosts/test_rayserve.py, tests/test_rayserve_loop.py).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
import ray
from edgeloop.platform.tensorflow_import import import_tensorflow
from pydantic import Field
from ray import serve
from ray.serve.config import gRPCOptions
from ray.serve.grpc_util import RayServegRPCContext

import_tensorflow()  # each replica and proxy imports this module first: see that module

from edgeloop.gateway.hosts.embedded import EmbeddedConfig, EmbeddedHost  # noqa: E402
from edgeloop.gateway.hosts.protocol import ServingProtocol  # noqa: E402
from edgeloop.gateway.hosts.repository import ModelRepository  # noqa: E402
from edgeloop.platform import rayhead  # noqa: E402
from edgeloop.platform.config import ServiceSettings, load_settings  # noqa: E402
from edgeloop.platform.errors import ConfigError, EdgeloopError  # noqa: E402
from edgeloop.platform.heap import freeze_heap  # noqa: E402
from edgeloop.platform.logs import configure_logging, printed_lines_to_log  # noqa: E402

log = logging.getLogger(__name__)

APP_NAME = "edgeloop-models"
SERVE_APPLICATIONS = "/ray.serve.RayServeAPIService/ListApplications"
SERVICER_FUNCTIONS = [
    "tensorflow_serving.apis.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server",
    "tensorflow_serving.apis.model_service_pb2_grpc.add_ModelServiceServicer_to_server",
]
"""What Ray Serve's gRPC proxy serves; the replicas' methods carry the RPC names."""

T = TypeVar("T")
LOADING_WAIT_S = 10.0
"""How long a replica's Predict waits for a version it is loading already."""


async def _answer(call: Awaitable[T], context: RayServegRPCContext) -> T:
    try:
        return await call
    except EdgeloopError as exc:
        # Ray Serve keeps a code set on the context when the method then raises.
        context.set_code(exc.code)
        context.set_details(exc.message)
        raise


@serve.deployment(name="prediction")
class PredictionDeployment:
    """One replica: the TF Serving protocol over an embedded host and the repository."""

    def __init__(self, repository: str, embedded: EmbeddedConfig | None = None) -> None:
        self.protocol = ServingProtocol(EmbeddedHost(embedded), ModelRepository(repository),
                                        loading_wait_s=LOADING_WAIT_S)
        freeze_heap("replica started")  # TensorFlow and Ray: out of every full collection

    async def check_health(self) -> None:
        """Serve's periodic replica health check: also warms up what models.config names."""
        self.protocol.preload_configured()

    async def Predict(self, request: Any, grpc_context: RayServegRPCContext) -> Any:  # noqa: N802
        """PredictionService/Predict."""
        self.protocol.preload_configured()
        return await _answer(self.protocol.predict(request), grpc_context)

    async def GetModelMetadata(self, request: Any,  # noqa: N802
                               grpc_context: RayServegRPCContext) -> Any:
        """PredictionService/GetModelMetadata (the version's signature_def map)."""
        return await _answer(self.protocol.model_metadata(request), grpc_context)

    async def GetModelStatus(self, request: Any,  # noqa: N802
                             grpc_context: RayServegRPCContext) -> Any:
        """ModelService/GetModelStatus (asking for a version starts its load)."""
        self.protocol.preload_configured()
        return await _answer(self.protocol.model_status(request), grpc_context)

    async def HandleReloadConfigRequest(self, request: Any,  # noqa: N802
                                        grpc_context: RayServegRPCContext) -> Any:
        """ModelService/HandleReloadConfigRequest (this replica; the others read the file)."""
        return await _answer(self.protocol.reload_config(request), grpc_context)


def build_app(repository: str, replicas: int = 1, cpus_per_replica: float = 1.0,
              embedded: EmbeddedConfig | None = None) -> serve.Application:
    """The Ray Serve application: ``replicas`` copies of :class:`PredictionDeployment`."""
    threads = max(1, int(cpus_per_replica))
    embedded = embedded or EmbeddedConfig(predict_threads=threads, intra_op_threads=threads)
    return PredictionDeployment.options(
        num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica},
    ).bind(repository, embedded)


def start(repository: str, grpc_port: int, http_port: int = 8000, replicas: int = 1,
          cpus_per_replica: float = 1.0, ready_timeout_s: float = 600.0) -> None:
    """Start Serve with the gRPC proxy on ``grpc_port``, deploy the application, and wait
    until the proxy answers for it."""
    grpc_options = gRPCOptions(port=grpc_port, grpc_servicer_functions=SERVICER_FUNCTIONS)
    http_options = {"host": "127.0.0.1", "port": http_port}
    try:
        serve.start(grpc_options=grpc_options, http_options=http_options)
    except TimeoutError as exc:
        # serve.start gives the proxies a hard-coded 60 s; the gRPC proxy imports the TF
        # Serving protos (all of TensorFlow), which takes longer on a busy machine. The
        # controller keeps starting it: connect again and wait for the proxy below.
        log.warning("Serve's proxy is still starting; waiting for it", extra={
            "error": str(exc)})
        serve.start(grpc_options=grpc_options, http_options=http_options)
    # route_prefix "/": only applications with a route are reachable through the proxies.
    serve.run(build_app(repository, replicas, cpus_per_replica), name=APP_NAME,
              route_prefix="/")
    wait_proxy(f"127.0.0.1:{grpc_port}", ready_timeout_s)
    log.info("Ray Serve model host ready", extra={"grpc_port": grpc_port, "replicas": replicas,
                                                  "repository": repository})


def proxy_serves_app(address: str, timeout_s: float = 2.0) -> bool:
    """Whether Serve's gRPC proxy at ``address`` is up and routes to the application."""
    try:
        with grpc.insecure_channel(address) as channel:
            names = channel.unary_unary(SERVE_APPLICATIONS)(b"", timeout=timeout_s)
    except grpc.RpcError:
        return False
    return APP_NAME.encode() in names  # ListApplicationsResponse: repeated string = 1


def wait_proxy(address: str, timeout_s: float) -> None:
    """Block until :func:`proxy_serves_app`; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not proxy_serves_app(address):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray Serve's gRPC proxy on {address} does not serve "
                               f"{APP_NAME} after {timeout_s}s")
        time.sleep(1.0)


class RayServeSettings(ServiceSettings):
    """Configuration of the Ray Serve model host (``python -m edgeloop.gateway.hosts.rayserve``)."""

    ray_address: str = Field(min_length=1, description="Ray cluster to deploy on "
                             "(host:port of its head's GCS, e.g. 127.0.0.1:6379)")
    model_repository: str = Field(min_length=1, description="folder of published models "
                                  "(<model>/<version>/ SavedModels and models.config), the "
                                  "same path on every Ray node")
    rayserve_grpc_port: int = Field(default=9000, ge=1, le=65535, description="port of "
                                    "Serve's gRPC proxy: TF Serving's PredictionService and "
                                    "ModelService")
    rayserve_http_port: int = Field(default=8000, ge=1, le=65535, description="port of "
                                    "Serve's HTTP proxy (unused by edgeloop; Serve always "
                                    "starts it)")
    rayserve_replicas: int = Field(default=1, ge=1, le=64, description="replicas of the "
                                   "model deployment")
    rayserve_cpus_per_replica: float = Field(default=1.0, gt=0, le=64, description="CPUs "
                                             "Ray reserves for each replica (and its TF threads)")
    ray_connect_timeout_s: float = Field(default=300.0, gt=0, description="seconds to keep "
                                         "trying to join the cluster at start")


def connect(address: str, timeout_s: float) -> None:
    """``ray.init(address)``, retried until ``timeout_s``: the head may still be starting."""
    rayhead.workers_run_this_python()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.init(address=address, log_to_driver=False)
            return
        except (ConnectionError, RuntimeError) as exc:
            ray.shutdown()
            if time.monotonic() > deadline:
                raise ConfigError(f"EDGELOOP_RAY_ADDRESS: cannot join Ray at {address}: "
                                  f"{exc}") from exc
            log.warning("Ray not reachable yet, retrying", extra={"address": address,
                                                                  "error": str(exc)})
            time.sleep(2.0)


def main() -> None:
    """Join the cluster, deploy, then wait for SIGTERM/SIGINT and delete the application."""
    settings = load_settings(RayServeSettings)
    configure_logging("rayserve", settings.log_level, settings.log_format)
    printed_lines_to_log()  # Ray's driver prints its raylet's errors (as run_service does)
    stop = threading.Event()
    connect(settings.ray_address, settings.ray_connect_timeout_s)
    # After joining: ray.init on the main thread sets Ray's own SIGTERM handler (SystemExit)
    # and abseil's failure handler, which dumps a stack trace and aborts a shutdown longer
    # than 3 s with SIGABRT (ray-project/ray#64830); Serve's shutdown can take that long.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        start(settings.model_repository, settings.rayserve_grpc_port,
              settings.rayserve_http_port, settings.rayserve_replicas,
              settings.rayserve_cpus_per_replica)
        stop.wait()
    finally:
        # serve.shutdown also stops the controller and proxies: the head is left as found.
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
