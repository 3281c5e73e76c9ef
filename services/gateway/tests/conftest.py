"""Fixtures of the gateway's component tests: a real gateway with contract doubles around it.

The gateway runs in-process (``edgeloop.platform.serve``) with its real embedded model
host on real TF SavedModels. The registry and the features service are *contract
doubles*: small gRPC servers on loopback implementing the RegistryService and
FeatureStoreService contracts (only the RPCs the gateway calls), so these tests can
steer deployments, revocations and outages precisely. The real services are used in
the cross-service tests in ``tests/test_data_plane.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fs_grpc
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.registry.v1 import deployment_pb2, device_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.gateway.app import App
from edgeloop.gateway.settings import Settings
from edgeloop.platform import serve
from edgeloop.testing.tiny_models import save_tiny_model
from grpc import aio

MODEL = "distance"
REGISTRY_TOKEN = "gateway-registry-token"
BIAS_MM = {"1": 1000.0, "2": 2000.0, "3": 3000.0}
"""Each tiny model version answers bias + [0, 100] mm, so an answer names its version."""


# --- models ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<repo>/distance/{1,2,3}``: three versions of the tiny SavedModel."""
    repo = tmp_path_factory.mktemp("models")
    for version, bias in BIAS_MM.items():
        save_tiny_model(repo / MODEL / version, bias)
    return repo


def _convert_tflite(saved_model: Path, target: Path, quantized: bool = False) -> Path:
    """``target`` written from ``saved_model`` as the registry converts (``quantized``: its
    dynamic-range twin)."""
    import tensorflow as tf  # noqa: PLC0415 - only the tests that convert load it

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model),
                                                         signature_keys=["serving_default"])
    if quantized:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    staging = target.with_name(f".{target.name}.tmp")  # as the registry writes it
    staging.write_bytes(converter.convert())
    staging.replace(target)
    return target


@pytest.fixture(scope="session")
def convert_tflite() -> Callable[..., Path]:
    """The :func:`_convert_tflite` helper (conftest cannot be imported in importlib mode)."""
    return _convert_tflite


def version_of(distance_mm: float) -> str:
    """Which tiny model version produced ``distance_mm``."""
    for version, bias in BIAS_MM.items():
        if bias <= distance_mm <= bias + 100.0:
            return version
    raise AssertionError(f"{distance_mm} mm comes from no known version")


@pytest.fixture(scope="session")
def answer_version() -> Callable[[float], str]:
    """The :func:`version_of` helper (conftest cannot be imported in importlib mode)."""
    return version_of


# --- frames ---------------------------------------------------------------------------


def make_jpeg(seed: int, width: int = 320, height: int = 240) -> bytes:
    """A synthetic camera frame: a gradient with noise, JPEG-encoded."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :, np.newaxis]
    image = np.clip(ramp + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="session")
def jpegs() -> list[bytes]:
    """Eight different valid JPEG frames."""
    return [make_jpeg(seed) for seed in range(8)]


def frame(seq: int, jpeg: bytes, sensor_mm: float | None = None, **kw: Any) -> gw_pb2.StreamRequest:
    """A Frame request."""
    f = edge_pb2.Frame(seq=seq, jpeg=jpeg, **kw)
    if sensor_mm is not None:
        f.sensor_mm = sensor_mm
    f.captured_at.GetCurrentTime()
    return gw_pb2.StreamRequest(frame=f)


def hello(device_id: str, session_id: str = "session-1") -> gw_pb2.StreamRequest:
    """A Hello request."""
    return gw_pb2.StreamRequest(
        hello=edge_pb2.Hello(
            device_id=device_id, session_id=session_id, client_version="test", capabilities=["tof"]
        )
    )


@pytest.fixture(scope="session")
def requests() -> Any:
    """Request builders: ``requests.hello(device)``, ``requests.frame(seq, jpeg, sensor)``."""
    return type("Requests", (), {"hello": staticmethod(hello), "frame": staticmethod(frame)})


# --- contract doubles -----------------------------------------------------------------


def resolved(arm: str, version: str, repo: Path, label: str = "") -> deployment_pb2.ResolvedArm:
    """A resolved arm pointing at a tiny model version in ``repo``."""
    return deployment_pb2.ResolvedArm(
        arm=arm,
        model_name=MODEL,
        model_version=version,
        model_path=str(repo / MODEL / version),
        version_label=label,
    )


class RegistryDouble(reg_grpc.RegistryServiceServicer):
    """Contract double of RegistryService: AuthenticateDevice and WatchDeployments only."""

    def __init__(self, ttl_s: int = 60) -> None:
        self.ttl_s = ttl_s
        self.devices: dict[str, tuple[str, str]] = {}
        self.deployments: dict[str, deployment_pb2.Deployment] = {}
        self.watchers: list[asyncio.Queue[reg_pb2.WatchDeploymentsResponse]] = []
        self.auth_calls = 0
        self.auth_finished = 0
        self.auth_gate: asyncio.Event | None = None
        """When set, AuthenticateDevice waits for it (a slow registry)."""

    def add_device(self, device_id: str, token: str, deployment: str) -> None:
        self.devices[device_id] = (token, deployment)

    def _check_caller(self, context: aio.ServicerContext) -> bool:
        return (
            dict(context.invocation_metadata()).get("authorization") == f"Bearer {REGISTRY_TOKEN}"
        )

    async def AuthenticateDevice(
        self, request: reg_pb2.AuthenticateDeviceRequest, context: aio.ServicerContext
    ) -> reg_pb2.AuthenticateDeviceResponse:
        self.auth_calls += 1
        try:
            if self.auth_gate is not None:
                await self.auth_gate.wait()
            if not self._check_caller(context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "caller token")
            token, deployment = self.devices.get(request.device_id, (None, ""))
            if token is None or token != request.token:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "device token refused")
            device = device_pb2.Device(device_id=request.device_id, deployment=deployment)
            return reg_pb2.AuthenticateDeviceResponse(device=device, cache_ttl_seconds=self.ttl_s)
        finally:
            self.auth_finished += 1

    async def WatchDeployments(
        self, request: reg_pb2.WatchDeploymentsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[reg_pb2.WatchDeploymentsResponse]:
        if not self._check_caller(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "caller token")
        queue: asyncio.Queue[reg_pb2.WatchDeploymentsResponse] = asyncio.Queue()
        self.watchers.append(queue)
        try:
            yield self.snapshot()
            while True:
                yield await queue.get()
        finally:
            self.watchers.remove(queue)

    def snapshot(self) -> reg_pb2.WatchDeploymentsResponse:
        assignments = [
            deployment_pb2.DeviceAssignment(device_id=d, deployment=dep)
            for d, (_, dep) in self.devices.items()
        ]
        return reg_pb2.WatchDeploymentsResponse(
            snapshot=True, deployments=self.deployments.values(), assignments=assignments
        )

    def put_deployment(self, deployment: deployment_pb2.Deployment) -> None:
        """Create or change a deployment and tell every watcher."""
        deployment.revision = self.deployments.get(deployment.name, deployment).revision + 1
        self.deployments[deployment.name] = deployment
        self.broadcast(reg_pb2.WatchDeploymentsResponse(deployments=[deployment]))

    def assign(self, device_id: str, token: str, deployment: str) -> None:
        """Register (or move) a device and tell every watcher about its assignment."""
        self.add_device(device_id, token, deployment)
        self.broadcast(
            reg_pb2.WatchDeploymentsResponse(
                assignments=[
                    deployment_pb2.DeviceAssignment(device_id=device_id, deployment=deployment)
                ]
            )
        )

    def revoke(self, device_id: str) -> None:
        """Revoke a device and tell every watcher."""
        self.devices.pop(device_id, None)
        self.broadcast(reg_pb2.WatchDeploymentsResponse(revoked_device_ids=[device_id]))

    def broadcast(self, change: reg_pb2.WatchDeploymentsResponse) -> None:
        for queue in self.watchers:
            queue.put_nowait(change)


class FeaturesDouble(fs_grpc.FeatureStoreServiceServicer):
    """Contract double of FeatureStoreService.Ingest: idempotent by observation id.

    ``available = False`` makes Ingest answer UNAVAILABLE, as a features service that is down.
    """

    def __init__(self) -> None:
        self.stored: dict[str, observation_pb2.Observation] = {}
        self.received = 0
        self.available = True
        self.calls = 0
        self.samples: dict[tuple[str, int], fs_pb2.GatewaySample] = {}
        """RecordGatewaySamples' samples by (gateway, sample time in ns), as stored once."""

    async def Ingest(
        self, request_iterator: AsyncIterator[fs_pb2.IngestRequest], context: aio.ServicerContext
    ) -> fs_pb2.IngestResponse:
        self.calls += 1
        if not self.available:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "features is down (test double)")
        reply = fs_pb2.IngestResponse()
        async for request in request_iterator:
            for obs in request.observations:
                self.received += 1
                if obs.observation_id in self.stored:
                    reply.duplicates += 1
                else:
                    self.stored[obs.observation_id] = obs
                    reply.stored += 1
        return reply

    async def RecordGatewaySamples(
        self, request: fs_pb2.RecordGatewaySamplesRequest, context: aio.ServicerContext
    ) -> fs_pb2.RecordGatewaySamplesResponse:
        if not self.available:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "features is down (test double)")
        stored = 0
        for sample in request.samples:
            key = (sample.gateway_id, sample.sampled_at.ToNanoseconds())
            stored += key not in self.samples
            self.samples.setdefault(key, sample)
        return fs_pb2.RecordGatewaySamplesResponse(stored=stored)

    async def wait_for(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until ``count`` observations are stored."""
        async with asyncio.timeout(timeout_s):
            while len(self.stored) < count:
                await asyncio.sleep(0.02)


async def _start_double(
    add: Callable[[Any, aio.Server], None], servicer: Any
) -> tuple[aio.Server, str]:
    server = aio.server()
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


class Harness:
    """A running gateway with its doubles, and a client for it."""

    def __init__(
        self, registry: RegistryDouble, features: FeaturesDouble, app: App, address: str, repo: Path
    ) -> None:
        self.registry = registry
        self.features = features
        self.app = app
        self.address = address
        self.repo = repo
        self.channel = aio.insecure_channel(address)
        self.stub = gw_grpc.EdgeGatewayServiceStub(self.channel)

    def open(self, device_id: str, token: str) -> Any:
        """A Stream call with the device's metadata."""
        return self.stub.Stream(
            metadata=(("authorization", f"Bearer {token}"), ("x-device-id", device_id))
        )

    async def exchange(
        self,
        device_id: str,
        token: str,
        messages: list[gw_pb2.StreamRequest],
        timeout_s: float = 30.0,
    ) -> list[gw_pb2.StreamResponse]:
        """Send ``messages``, close the sending side, and collect every answer."""
        call = self.open(device_id, token)

        async def send() -> None:
            for message in messages:
                await call.write(message)
            await call.done_writing()

        sender = asyncio.create_task(send())
        async with asyncio.timeout(timeout_s):
            answers = [answer async for answer in call]
        await sender
        return answers

    async def stream_labelled(self, requests: Any, jpegs: list[bytes], count: int,
                              device_id: str = "robot-1", token: str = "secret-1") -> Any:
        """Open a stream for the device, say hello and send ``count`` labelled frames, each
        answered with a prediction; returns the call, still open."""
        call = self.open(device_id, token)
        await call.write(requests.hello(device_id))
        assert (await call.read()).HasField("welcome")
        for seq in range(1, count + 1):
            await call.write(requests.frame(seq, jpegs[seq % len(jpegs)], 500.0))
            assert (await call.read()).prediction.seq == seq
        return call

    async def wait_state(self, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Wait until ``predicate`` holds (a deployment change applied, ...)."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.02)


def direct(
    name: str, version: str, repo: Path, data_group: str = "group-1"
) -> deployment_pb2.Deployment:
    """An active direct deployment on ``version`` of the tiny model."""
    return deployment_pb2.Deployment(
        name=name,
        model_name=MODEL,
        data_group=data_group,
        active=True,
        strategy=deployment_pb2.STRATEGY_DIRECT,
        selector=deployment_pb2.VersionSelector(version=version),
        resolved=[resolved("stable", version, repo)],
    )


@pytest.fixture(scope="session")
def deployments(model_repository: Path) -> Any:
    """Deployment builders: ``deployments.direct(name, version)``, ``deployments.resolved(...)``."""
    return type(
        "Deployments",
        (),
        {
            "direct": staticmethod(
                lambda name, version, **kw: direct(name, version, model_repository, **kw)
            ),
            "resolved": staticmethod(lambda arm, version: resolved(arm, version, model_repository)),
        },
    )


@pytest.fixture
def start_gateway(tmp_path: Path, model_repository: Path) -> Callable[..., Any]:
    """``async with start_gateway(**settings) as harness``: doubles + a gateway on loopback.

    The registry double starts with deployment ``parking`` (direct, version 1) and device
    ``robot-1`` (token ``secret-1``) assigned to it.
    """

    @contextlib.asynccontextmanager
    async def start(
        registry: RegistryDouble | None = None,
        features: FeaturesDouble | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Harness]:
        registry = registry or RegistryDouble()
        if not registry.deployments:
            registry.deployments["parking"] = direct("parking", "1", model_repository)
            registry.add_device("robot-1", "secret-1", "parking")
        features = features or FeaturesDouble()
        reg_server, reg_addr = await _start_double(
            reg_grpc.add_RegistryServiceServicer_to_server, registry
        )
        try:
            fs_server, fs_addr = await _start_double(
                fs_grpc.add_FeatureStoreServiceServicer_to_server, features
            )
        except BaseException:
            await reg_server.stop(0)
            raise
        # The doubles are stopped on every path, also when the settings or the gateway fail.
        try:
            settings = Settings(
                **{
                    "listen_addr": "127.0.0.1:0",
                    "registry_addr": reg_addr,
                    "registry_token": REGISTRY_TOKEN,
                    "features_addr": fs_addr,
                    "model_repository": str(model_repository),
                    "spool_dir": str(tmp_path / "spool"),
                    "forward_interval_ms": 50,
                    "gateway_id": "gw-test",
                    **overrides,
                }
            )
            app = App(settings)
            async with serve(app, settings) as running:
                harness = Harness(registry, features, app, running.address, model_repository)
                try:
                    await asyncio.wait_for(app.state.synced.wait(), 30)
                    yield harness
                finally:
                    await harness.channel.close()
        finally:
            await reg_server.stop(0)
            await fs_server.stop(0)

    return start
