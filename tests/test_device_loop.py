"""The loop on the device (issue 14), on the real registry, features and gateway.

Robots drive with on-device inference (LiteRT on the registry's TFLite export): they
download the version their deployment resolves to, verify it, predict every frame
themselves and send the prediction up with the frame. A new version is promoted; every
robot hears it on its stream, downloads, verifies and swaps on its own, and says so in
its frames. Then the gateway goes down: the robot keeps parking on its own model and
buffers; when the gateway is back every buffered frame is recorded exactly once. A robot
that runs quantized twins gets the champion's twin once the gateway runs it, and predicts
with it.

One stack for the module: a private PostgreSQL cluster, MLflow on SQLite, and the real
registry, features and gateway served in-process on loopback. Models are the tiny real
SavedModels of conftest.py (version n answers 1000 * n + [0, 100] mm), registered
through RegisterModelVersion; the registry publishes SavedModel and TFLite.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fs_grpc
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.edge_client.control.parking import Mode
from edgeloop.edge_client.inference.device_model import DeviceModel
from edgeloop.edge_client.inference.onboard import Inference, Onboard
from edgeloop.edge_client.inference.store import ModelStore
from edgeloop.edge_client.simulate import drive_session_async
from edgeloop.edge_client.stream.buffer import OfflineBuffer
from edgeloop.platform import bearer
from edgeloop.platform.server import RunningServer, start_server
from edgeloop.testing import free_port
from grpc import aio

pytestmark = pytest.mark.asyncio(loop_scope="module")
log = logging.getLogger(__name__)

ADMIN = "device-admin-token-0123456789abcdef"
READ = "device-read-token-0123456789abcdef"
MODEL = "distance"
DEPLOYMENT = "fleet"
DEVICE = observation_pb2.PredictionSource.PREDICTION_SOURCE_DEVICE
ROBOTS = 3
CONVERT_S = 300.0
"""TFLite conversion runs in the registry's background; minutes on a busy 2-core machine."""


@dataclass
class Stack:
    """The running services and clients for them."""

    root: Path
    registry_addr: str
    features_addr: str
    gateway_settings: Any
    gateway: RunningServer | None = None
    channels: list[aio.Channel] = field(default_factory=list)

    def _channel(self, address: str) -> aio.Channel:
        channel = aio.insecure_channel(address)
        self.channels.append(channel)
        return channel

    @property
    def registry(self) -> reg_grpc.RegistryServiceStub:
        return reg_grpc.RegistryServiceStub(self._channel(self.registry_addr))

    @property
    def gateway_addr(self) -> str:
        return self.gateway_settings.listen_addr

    async def start_gateway(self) -> None:
        from edgeloop.gateway.app import build_app

        self.gateway = await start_server(build_app(self.gateway_settings), self.gateway_settings)

    async def stop_gateway(self) -> None:
        assert self.gateway is not None
        await self.gateway.stop(1.0)
        self.gateway = None

    async def observations(self, **query: Any) -> list[observation_pb2.Observation]:
        stub = fs_grpc.FeatureStoreServiceStub(self._channel(self.features_addr))
        return [o async for page in stub.ListObservations(
            fs_pb2.ListObservationsRequest(**query), timeout=30) for o in page.observations]

    async def promote(self, version: str) -> None:
        await self.registry.PromoteModelVersion(reg_pb2.PromoteModelVersionRequest(
            model_name=MODEL, version=version, alias="champion", force=True),
            metadata=bearer(ADMIN), timeout=60)

    async def add_device(self, device_id: str) -> str:
        reply = await self.registry.RegisterDevice(reg_pb2.RegisterDeviceRequest(
            name=device_id, device_id=device_id, deployment=DEPLOYMENT), metadata=bearer(ADMIN))
        return reply.token


async def _wait(condition, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await condition():
                await asyncio.sleep(interval_s)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(pg_cluster, logged_models, tmp_path_factory) -> AsyncIterator[Stack]:
    """Registry, features and gateway; versions 1 and 2 registered with their TFLite files."""
    from edgeloop.features.app import build_app as build_features
    from edgeloop.features.settings import Settings as FeaturesSettings
    from edgeloop.gateway.settings import Settings as GatewaySettings
    from edgeloop.registry.app import App as RegistryApp
    from edgeloop.registry.settings import Settings as RegistrySettings

    root = tmp_path_factory.mktemp("device-loop")
    database = pg_cluster.ensure_database(f"device_{uuid.uuid4().hex[:12]}")
    registry_settings = RegistrySettings(
        listen_addr=f"127.0.0.1:{free_port()}", database_url=database,
        mlflow_tracking_uri=logged_models.tracking_uri, admin_token=ADMIN, read_token=READ,
        model_repository=str(root / "models"), shutdown_grace_s=1.0, refresh_interval_s=60.0)
    features_settings = FeaturesSettings(
        listen_addr=f"127.0.0.1:{free_port()}", database_url=database,
        object_store_dir=str(root / "objects"), ingest_workers=2, shutdown_grace_s=1.0)
    gateway_settings = GatewaySettings(
        listen_addr=f"127.0.0.1:{free_port()}", registry_addr=registry_settings.listen_addr,
        registry_token=READ, features_addr=features_settings.listen_addr,
        model_repository=str(root / "models"), spool_dir=str(root / "spool"),
        forward_interval_ms=50, gateway_id="gw-device", shutdown_grace_s=1.0)
    stack = Stack(root, registry_settings.listen_addr, features_settings.listen_addr,
                  gateway_settings)
    registry = await start_server(RegistryApp(registry_settings), registry_settings)
    features = await start_server(build_features(features_settings), features_settings)
    try:
        for run_id in logged_models.run_ids:
            await stack.registry.RegisterModelVersion(reg_pb2.RegisterModelVersionRequest(
                model_name=MODEL, run_id=run_id, artifact_path="model"),
                metadata=bearer(ADMIN), timeout=300)
        await stack.promote("1")
        await stack.registry.CreateDeployment(reg_pb2.CreateDeploymentRequest(
            deployment=deployment_pb2.Deployment(
                name=DEPLOYMENT, model_name=MODEL, active=True,
                strategy=deployment_pb2.STRATEGY_DIRECT,
                selector=deployment_pb2.VersionSelector(alias="champion"))),
            metadata=bearer(ADMIN))
        published = root / "models" / MODEL

        async def converted() -> bool:  # the quantized twin is written first
            return all((published / f"{v}.tflite").exists() for v in ("1", "2"))

        await _wait(converted, CONVERT_S, "the registry's TFLite exports", 0.5)
        await stack.start_gateway()
        yield stack
    finally:
        if stack.gateway is not None:
            await stack.stop_gateway()
        await features.stop(1.0)
        await registry.stop(1.0)
        for channel in stack.channels:
            await channel.close()


@dataclass
class Robot:
    """One simulated robot with on-device inference, driving until told to stop."""

    device_id: str
    token: str
    model_dir: Path
    onboard: Onboard = field(init=False)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    task: asyncio.Task[Any] | None = None

    quantized: bool = False

    def __post_init__(self) -> None:
        self.onboard = Onboard(Inference.DEVICE, DeviceModel(ModelStore(self.model_dir),
                                                             threads=1, quantized=self.quantized))

    @property
    def version(self) -> str:
        assert self.onboard.model is not None
        return self.onboard.model.version

    def start(self, gateway_addr: str, buffer_path: Path, seed: int) -> None:
        self.task = asyncio.create_task(drive_session_async(
            gateway_addr, self.device_id, self.token, "beige", runs=1, seed=seed, fps=8.0,
            realtime=True, mode=Mode.MODEL, buffer_path=buffer_path, session_id=self.session_id,
            onboard=self.onboard, keep_driving=lambda: not self.stop.is_set(),
            drain_timeout_s=60.0))

    async def finish(self) -> Any:
        self.stop.set()
        assert self.task is not None
        async with asyncio.timeout(120):
            return await self.task


async def test_robots_download_verify_and_swap_to_a_promoted_version_on_their_own(
        stack: Stack, tmp_path: Path) -> None:
    robots = [Robot(f"robot-{i}", await stack.add_device(f"robot-{i}"), tmp_path / f"m{i}")
              for i in range(ROBOTS)]
    for i, robot in enumerate(robots):
        robot.start(stack.gateway_addr, tmp_path / f"buffer-{i}.db", seed=i)
    try:
        async def on_version(version: str) -> bool:
            return all(r.version == version for r in robots)

        await _wait(lambda: on_version("1"), 120, "every robot to load version 1")
        promoted_at = time.monotonic()
        await stack.promote("2")
        await _wait(lambda: on_version("2"), 120, "every robot to swap to version 2")

        async def recorded_with_v2() -> bool:
            found = await stack.observations(deployments=[DEPLOYMENT], model_name=MODEL,
                                             model_version="2")
            return {o.device_id for o in found} == {r.device_id for r in robots}

        await _wait(recorded_with_v2, 60, "frames predicted by version 2 from every robot")
    finally:
        summaries = await asyncio.gather(*(r.finish() for r in robots), return_exceptions=True)
    for summary in summaries:
        assert not isinstance(summary, BaseException), summary

    rows = await stack.observations(deployments=[DEPLOYMENT])
    for robot, summary in zip(robots, summaries, strict=True):
        assert robot.onboard.model is not None and robot.onboard.model.identity is not None
        assert not robot.onboard.model.identity.quantized, "it did not ask for twins"
        switches = robot.onboard.model.switches
        assert [s.model_version for s in switches] == ["1", "2"]
        switch_s = switches[1].at_monotonic - promoted_at
        log.warning("%s switched to version 2 %.2f s after promotion (%s)", robot.device_id,
                    switch_s, summary.device_switches[1][1])
        assert [v for v, _ in summary.device_switches] == ["1", "2"]
        mine = sorted((o for o in rows if o.device_id == robot.device_id), key=lambda o: o.seq)
        predicted = [o for o in mine if o.HasField("prediction_mm")]
        on_device = [o for o in predicted if o.prediction_source == DEVICE]
        assert on_device and not any(o.device_quantized for o in on_device)
        # Before its first model was downloaded the gateway predicted the robot's frames.
        first_device_seq = on_device[0].seq
        assert all(o.seq < first_device_seq for o in predicted if o.prediction_source != DEVICE)
        versions = [o.model_version for o in on_device]
        # The robot says which version predicted: 1s, then 2s, never back.
        assert versions == sorted(versions) and set(versions) == {"1", "2"}
        for o in on_device:  # the downloaded TFLite file of that version answered
            bias = 1000.0 * int(o.model_version)
            assert bias - 1 <= o.prediction_mm <= bias + 101
            if o.HasField("sensor_mm"):
                assert o.error_mm == pytest.approx(o.prediction_mm - o.sensor_mm, abs=0.01)


async def test_gateway_down_robot_parks_on_its_model_buffers_and_delivers_exactly_once(
        stack: Stack, tmp_path: Path) -> None:
    robot = Robot("robot-offline", await stack.add_device("robot-offline"), tmp_path / "m")
    answers_while_down: list[str] = []
    predict = robot.onboard.predict

    async def counting_predict(jpeg: bytes):  # records which version steered while offline
        answer = await predict(jpeg)
        if stack.gateway is None and answer is not None:
            answers_while_down.append(answer.model_version)
        return answer

    robot.onboard.predict = counting_predict  # type: ignore[method-assign]
    buffer_path = tmp_path / "buffer.db"
    robot.start(stack.gateway_addr, buffer_path, seed=7)
    reader = OfflineBuffer(buffer_path)
    try:
        async def has_model() -> bool:
            return robot.version == "2"

        await _wait(has_model, 120, "the robot to load the champion")
        await stack.stop_gateway()

        async def buffered() -> bool:
            # Both counts: frames the robot buffers during the gateway's grace period are
            # buffered but not yet counted as answered while it was down.
            return reader.count(robot.session_id) >= 12 and len(answers_while_down) >= 12

        await _wait(buffered, 60, "frames buffered and answered while the gateway is down")
        await stack.start_gateway()
    finally:
        if stack.gateway is None:
            await stack.start_gateway()
        summary = await robot.finish()
        reader.close()

    assert len(answers_while_down) >= 12 and set(answers_while_down) == {"2"}
    assert summary.buffered_left == 0 and summary.delivery.late >= 12

    delivered = summary.delivery.frames - summary.delivery.dropped  # unlabelled offline: dropped
    assert summary.delivery.unanswered == 0

    async def all_recorded() -> bool:
        return len(await stack.observations(device_id=robot.device_id)) >= delivered

    await _wait(all_recorded, 60, "every delivered frame in features")
    rows = await stack.observations(device_id=robot.device_id)
    seqs = Counter(o.seq for o in rows)
    assert all(n == 1 for n in seqs.values())  # exactly once
    assert len(rows) == delivered
    late = [o for o in rows if o.late]
    assert len(late) >= 12
    assert all(o.prediction_source == DEVICE and o.model_version == "2" for o in late)


async def test_a_robot_that_runs_twins_gets_the_champions_once_the_gateway_runs_it(
        stack: Stack, tmp_path: Path) -> None:
    twin = stack.root / "models" / MODEL / "2.quantized.tflite"
    assert twin.exists(), "the registry writes a twin beside every float file"
    robot = Robot("robot-int8", await stack.add_device("robot-int8"), tmp_path / "m",
                  quantized=True)
    robot.start(stack.gateway_addr, tmp_path / "buffer.db", seed=5)
    try:
        async def on_twin() -> bool:
            model = robot.onboard.model
            return model is not None and model.identity is not None and model.identity.quantized

        await _wait(on_twin, 120, "the robot to swap to the champion's quantized twin")
        twin_since = robot.onboard.model.switches[-1].at_wall  # type: ignore[union-attr]

        async def recorded_from_twin() -> bool:
            found = await stack.observations(deployments=[DEPLOYMENT])
            return any(o.device_id == robot.device_id and o.prediction_source == DEVICE
                       and o.time.ToSeconds() > twin_since + 1 for o in found)

        await _wait(recorded_from_twin, 60, "frames the twin predicted")
    finally:
        summary = await robot.finish()
    model = robot.onboard.model
    assert model is not None and model.identity is not None
    assert (model.identity.model_version, model.identity.quantized) == ("2", True)
    assert model.identity.sha256 == hashlib.sha256(twin.read_bytes()).hexdigest()
    assert model.store.path(model.identity).name == "2.quantized.tflite"
    rows = [o for o in await stack.observations(deployments=[DEPLOYMENT])
            if o.device_id == robot.device_id and o.prediction_source == DEVICE]
    assert rows and {o.model_version for o in rows} == {"2"}
    # Recorded with which file ran: the twin's frames say so, the float file's (if any came
    # first) do not.
    twin_rows = [o for o in rows if o.time.ToSeconds() > twin_since + 1]
    assert twin_rows and all(o.device_quantized for o in twin_rows)
    for o in rows:  # the twin answers as version 2 does, within its agreement
        assert 2000 - 2 <= o.prediction_mm <= 2100 + 2
    assert summary.buffered_left == 0
