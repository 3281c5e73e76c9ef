"""The closed loop on the Ray Serve model host: robots stream through a gateway whose models
run in Ray Serve, and a version switch happens mid-stream.

Everything is real: a Ray head node process of the module's own, the Serve
application deployed on it with two replicas behind Serve's gRPC proxy, the registry
publishing versions to the model repository and reloading Serve through TF Serving's
``ModelService`` (``EDGELOOP_TFSERVING_ADDR``), the features service on PostgreSQL, and the
gateway calling Serve with its TF Serving client (``EDGELOOP_MODEL_HOST=tfserving``). TF
Serving itself cannot be installed here; the Serve application speaks its protocol.
Version ``n`` answers ``1000 * n + [0, 100]`` mm, so every answer says which version made it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fs_grpc
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.edge_client.simulate import render_dataset
from edgeloop.platform import bearer
from edgeloop.platform.server import start_server
from edgeloop.testing import RayNodes, driver, free_port
from grpc import aio

if TYPE_CHECKING:  # only the type: the loop fixture imports the gateway lazily
    from edgeloop.gateway.app import App as GatewayApp

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = "serve-admin-token-0123456789abcdef"
READ = "serve-read-token-0123456789abcdef"
MODEL = "distance"
ROBOTS, FRAMES = 4, 30


class Loop:
    """Addresses and clients of the module's running services."""

    def __init__(self, registry: str, features: str, gateway: str,
                 gateway_app: GatewayApp) -> None:
        self.registry_addr, self.features_addr, self.gateway_addr = registry, features, gateway
        self.gateway_app = gateway_app
        """The in-process gateway: :meth:`routed` looks at its routing."""
        self.versions: dict[str, float] = {}
        self.channel = aio.insecure_channel(registry)
        self.registry = reg_grpc.RegistryServiceStub(self.channel)

    def made_by(self, version: str, distance_mm: float) -> bool:
        """Whether ``distance_mm`` is in ``version``'s range (``1000 * n + [0, 100]`` mm)."""
        bias = self.versions.get(version)
        return bias is not None and bias <= distance_mm <= bias + 100.0

    async def put_deployment(self, name: str, version: str, create: bool) -> None:
        deployment = deployment_pb2.Deployment(
            name=name, model_name=MODEL, data_group=f"{name}-data", active=True,
            strategy=deployment_pb2.STRATEGY_DIRECT,
            selector=deployment_pb2.VersionSelector(version=version))
        if create:
            await self.registry.CreateDeployment(
                reg_pb2.CreateDeploymentRequest(deployment=deployment), metadata=bearer(ADMIN))
        else:
            await self.registry.UpdateDeployment(
                reg_pb2.UpdateDeploymentRequest(deployment=deployment), metadata=bearer(ADMIN))

    async def routed(self, deployment: str, version: str, timeout_s: float = 600.0) -> None:
        """Wait until the gateway routes ``deployment``'s stable arm to ``version``: it has
        loaded the version (Serve warms it up first) and installed the new routing."""
        async with asyncio.timeout(timeout_s):
            while True:
                view = self.gateway_app.state.get(deployment)
                key = view.arms.get("stable") if view is not None else None
                if key is not None and key.version == version:
                    return
                await asyncio.sleep(0.1)

    async def observations(self, deployment: str) -> list:
        found = []
        async with aio.insecure_channel(self.features_addr) as channel:
            async for page in fs_grpc.FeatureStoreServiceStub(channel).ListObservations(
                    fs_pb2.ListObservationsRequest(deployments=[deployment]), timeout=30):
                found.extend(page.observations)
        return found


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayNodes]:
    """A head node of this module's own: the session's (``ray_nodes``) is stopped once the
    gateway's tests are done rather than sit idle through the trainer's and the stacks'."""
    nodes = RayNodes(num_cpus=2).start()
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def serve_app(ray_head, tmp_path_factory):  # noqa: ANN001, ANN201
    """The Ray Serve application on the module's head node over an empty model repository."""
    repository = tmp_path_factory.mktemp("serve-loop") / "models"
    repository.mkdir()
    with driver(ray_head):
        from edgeloop.gateway.hosts.rayserve import start
        from ray import serve

        port = free_port()
        try:
            start(str(repository), grpc_port=port, http_port=free_port(), replicas=2,
                  cpus_per_replica=0.5)
            yield repository, f"127.0.0.1:{port}"
        finally:
            serve.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loop(pg_cluster, logged_models, serve_app, tmp_path_factory) -> AsyncIterator[Loop]:
    """Registry (reloading Serve), features and gateway (calling Serve) in-process."""
    from edgeloop.features.app import build_app as build_features
    from edgeloop.features.settings import Settings as FeaturesSettings
    from edgeloop.gateway.app import build_app as build_gateway
    from edgeloop.gateway.settings import Settings as GatewaySettings
    from edgeloop.registry.app import App as RegistryApp
    from edgeloop.registry.settings import Settings as RegistrySettings

    repository, serve_addr = serve_app
    root = tmp_path_factory.mktemp("serve-loop-state")
    database = pg_cluster.ensure_database(f"serve_{uuid.uuid4().hex[:12]}")
    registry_settings = RegistrySettings(
        listen_addr=f"127.0.0.1:{free_port()}", database_url=database,
        mlflow_tracking_uri=logged_models.tracking_uri, admin_token=ADMIN, read_token=READ,
        model_repository=str(repository), tfserving_addr=serve_addr,
        tfserving_load_timeout_s=600.0, shutdown_grace_s=1.0, refresh_interval_s=60.0)
    features_settings = FeaturesSettings(
        listen_addr=f"127.0.0.1:{free_port()}", database_url=database,
        object_store_dir=str(root / "objects"), ingest_workers=2, shutdown_grace_s=1.0)
    gateway_settings = GatewaySettings(
        listen_addr=f"127.0.0.1:{free_port()}", registry_addr=registry_settings.listen_addr,
        registry_token=READ, features_addr=features_settings.listen_addr,
        model_host="tfserving", tfserving_addr=serve_addr, tfserving_deadline_s=60.0,
        spool_dir=str(root / "spool"), forward_interval_ms=50, gateway_id="gw-serve",
        shutdown_grace_s=1.0)
    registry = await start_server(RegistryApp(registry_settings), registry_settings)
    features = await start_server(build_features(features_settings), features_settings)
    gateway = await start_server(build_gateway(gateway_settings), gateway_settings)
    plane = Loop(registry_settings.listen_addr, features_settings.listen_addr,
                 gateway_settings.listen_addr, gateway.app)
    try:
        for index, run_id in enumerate(logged_models.run_ids):
            reply = await plane.registry.RegisterModelVersion(
                reg_pb2.RegisterModelVersionRequest(model_name=MODEL, run_id=run_id,
                                                    artifact_path="model"),
                metadata=bearer(ADMIN), timeout=600)
            plane.versions[reply.version.version] = 1000.0 * (index + 1)
        yield plane
    finally:
        await gateway.stop(1.0)
        await features.stop(1.0)
        await registry.stop(1.0)
        await plane.channel.close()


def _requests(device_id: str, frames: list, count: int) -> list[gw_pb2.StreamRequest]:
    hello = gw_pb2.StreamRequest(hello=edge_pb2.Hello(
        device_id=device_id, session_id=uuid.uuid4().hex, client_version="serve-loop"))
    out = [hello]
    for seq in range(1, count + 1):
        jpeg, sensor_mm = frames[seq % len(frames)]
        frame = edge_pb2.Frame(seq=seq, jpeg=jpeg)
        frame.captured_at.GetCurrentTime()
        if sensor_mm is not None:
            frame.sensor_mm = sensor_mm
        out.append(gw_pb2.StreamRequest(frame=frame))
    return out


async def _stream(address: str, device_id: str, token: str, messages: list,
                  switching: asyncio.Event, switched: asyncio.Event
                  ) -> list[gw_pb2.StreamResponse]:
    """Send the frames: half before the switch, a quarter while it happens (the registry
    moves the label and reloads Serve while the gateway still routes to v1 and loads v2),
    the rest once the gateway routes to v2 (so both versions answer)."""
    gates = {len(messages) // 2: switching, 3 * len(messages) // 4: switched}
    async with aio.insecure_channel(address) as channel:
        call = gw_grpc.EdgeGatewayServiceStub(channel).Stream(
            metadata=(("authorization", f"Bearer {token}"), ("x-device-id", device_id)))

        async def send() -> None:
            for index, message in enumerate(messages):
                if index in gates:
                    await gates[index].wait()
                await call.write(message)
                await asyncio.sleep(0.02)
            await call.done_writing()

        sender = asyncio.create_task(send())
        answers = [answer async for answer in call]
        await sender
        return answers


async def test_version_switch_while_robots_stream_through_ray_serve(loop: Loop) -> None:
    frames = [(f.jpeg, f.sensor_mm) for f in render_dataset("beige", 20, seed=5)]
    await loop.put_deployment("serve-switch", "1", create=True)
    tokens = {}
    for i in range(ROBOTS):
        device = f"car-r{i}"
        reply = await loop.registry.RegisterDevice(
            reg_pb2.RegisterDeviceRequest(name=device, device_id=device,
                                          deployment="serve-switch"), metadata=bearer(ADMIN))
        tokens[device] = reply.token
    # Until the gateway has loaded v1 it answers the deployment's frames with arm "none".
    await loop.routed("serve-switch", "1")
    switching, switched = asyncio.Event(), asyncio.Event()
    drives = [asyncio.create_task(_stream(loop.gateway_addr, device, token,
                                          _requests(device, frames, FRAMES), switching,
                                          switched))
              for device, token in tokens.items()]
    await asyncio.sleep(1.0)
    await loop.put_deployment("serve-switch", "2", create=False)
    switching.set()
    await loop.routed("serve-switch", "2")
    switched.set()
    results = await asyncio.wait_for(asyncio.gather(*drives), timeout=900)
    seen = set()
    for answers in results:
        assert all(a.HasField("prediction") for a in answers[1:]), "no frame may fail"
        assert sorted(a.prediction.seq for a in answers[1:]) == list(range(1, FRAMES + 1))
        named = [(a.prediction.seq, a.prediction.arm, a.prediction.model_version,
                  round(a.prediction.distance_mm, 1)) for a in answers[1:]]
        for a in answers[1:]:
            assert loop.made_by(a.prediction.model_version, a.prediction.distance_mm), named
            seen.add(a.prediction.model_version)
    assert seen == {"1", "2"}, "the switch happened while the robots streamed"
    async with asyncio.timeout(120):
        while len(rows := await loop.observations("serve-switch")) < ROBOTS * FRAMES:
            await asyncio.sleep(0.2)
    assert len(rows) == ROBOTS * FRAMES
    misnamed = [(r.observation_id, r.arm, r.model_version, r.prediction_mm) for r in rows
                if not loop.made_by(r.model_version, r.prediction_mm)]
    assert not misnamed, f"observations naming another version than their own: {misnamed}"
