"""Ray Serve for scale-out: TF Serving's protocol on Ray Serve's gRPC proxy.

Each replica runs :class:`ServingProtocol` over its own :class:`EmbeddedHost` and the
shared model repository (every replica follows ``models.config`` by itself), and Ray
Serve's gRPC proxy serves ``tensorflow.serving.PredictionService`` and ``ModelService``
on one port. A gateway reaches it with ``EDGELOOP_MODEL_HOST=tfserving`` and
``EDGELOOP_TFSERVING_ADDR=<proxy host>:<grpc port>``, exactly as it reaches TF Serving;
the registry can reload it the same way too.

Run on a Ray cluster (or a local one)::

    python -m edgeloop.gateway.hosts.rayserve --repository /models --grpc-port 9000 --replicas 2

Status: the protocol the replicas serve is tested end to end without Ray
(tests/hosts/test_protocol.py); the test through Ray Serve's proxy
(tests/hosts/test_rayserve.py, opt-in) has not passed on the 2-core dev VM yet, where
Ray's raylet died waiting for its agents under load before Serve's proxy started.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from ray import serve
from ray.serve.config import gRPCOptions
from ray.serve.grpc_util import RayServegRPCContext

from edgeloop.gateway.hosts.embedded import EmbeddedConfig, EmbeddedHost
from edgeloop.gateway.hosts.protocol import ServingProtocol
from edgeloop.gateway.hosts.repository import ModelRepository
from edgeloop.platform.errors import EdgeloopError

log = logging.getLogger(__name__)

APP_NAME = "edgeloop-models"
SERVICER_FUNCTIONS = [
    "tensorflow_serving.apis.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server",
    "tensorflow_serving.apis.model_service_pb2_grpc.add_ModelServiceServicer_to_server",
]
"""What Ray Serve's gRPC proxy serves; the replicas' methods carry the RPC names."""

T = TypeVar("T")


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
        self.protocol = ServingProtocol(EmbeddedHost(embedded), ModelRepository(repository))

    async def Predict(self, request: Any, grpc_context: RayServegRPCContext) -> Any:  # noqa: N802
        """PredictionService/Predict."""
        return await _answer(self.protocol.predict(request), grpc_context)

    async def GetModelStatus(self, request: Any,  # noqa: N802
                             grpc_context: RayServegRPCContext) -> Any:
        """ModelService/GetModelStatus (asking for a version starts its load)."""
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
          cpus_per_replica: float = 1.0) -> None:
    """Start Serve with the gRPC proxy on ``grpc_port`` and deploy the application."""
    grpc_options = gRPCOptions(port=grpc_port, grpc_servicer_functions=SERVICER_FUNCTIONS)
    serve.start(grpc_options=grpc_options, http_options={"host": "127.0.0.1", "port": http_port})
    serve.run(build_app(repository, replicas, cpus_per_replica), name=APP_NAME, route_prefix=None)
    log.info("Ray Serve model host ready", extra={"grpc_port": grpc_port, "replicas": replicas,
                                                  "repository": repository})


def main() -> None:
    """``python -m edgeloop.gateway.hosts.rayserve``: deploy, then wait for SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", default=os.environ.get("EDGELOOP_MODEL_REPOSITORY", ""),
                        help="model repository (default: EDGELOOP_MODEL_REPOSITORY)")
    parser.add_argument("--grpc-port", type=int, default=9000)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    args = parser.parse_args()
    if not args.repository:
        parser.error("--repository or EDGELOOP_MODEL_REPOSITORY is required")
    logging.basicConfig(level=logging.INFO)
    start(args.repository, args.grpc_port, args.http_port, args.replicas, args.cpus_per_replica)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()


if __name__ == "__main__":
    main()
