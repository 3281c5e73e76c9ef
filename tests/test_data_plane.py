"""The data plane end to end: simulated robots → gateway → features, on the real services.

One stack for the module: a private PostgreSQL cluster (one database, each service its
own schema), MLflow on SQLite, and the real registry, features and gateway services
served in-process on loopback (the gateway also as a real process where it must be
killed). Models are tiny real SavedModels registered through RegisterModelVersion and
published by the registry; the gateway's embedded host runs them. Version ``n`` answers
``1000 * n + [0, 100]`` mm, so every answer says which version made it.
"""

from __future__ import annotations

import asyncio
import math
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import dead_letter_pb2 as dl_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fs_grpc
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.edge_client.simulate import drive_session_async, render_dataset
from edgeloop.features.images import locate
from edgeloop.gateway.spool import count_records
from edgeloop.platform import bearer
from edgeloop.platform.server import RunningServer, start_server
from edgeloop.testing import ServiceProcess, free_port
from grpc import aio

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = "e2e-admin-token-0123456789abcdef"
READ = "e2e-read-token-0123456789abcdef"
MODEL = "distance"
Reason = edge_pb2.FrameErrorReason
GATEWAY_START_S = 300.0
"""Importing TensorFlow takes ~10 s on an idle 2-core machine and minutes on a busy one."""


@dataclass
class Plane:
    """The running services of the module and clients for them."""

    root: Path
    registry_addr: str
    features_settings: Any
    gateway_settings: Any
    versions: dict[str, float] = field(default_factory=dict)
    features_server: RunningServer | None = None
    channels: list[aio.Channel] = field(default_factory=list)
    gateway_app: Any = None

    def gateway_versions(self, deployment: str) -> set[str]:
        """The model versions the in-process gateway routes ``deployment`` to right now."""
        view = self.gateway_app.state.get(deployment)
        return {key.version for key in view.arms.values() if key} if view else set()

    def channel(self, address: str) -> aio.Channel:
        channel = aio.insecure_channel(address)
        self.channels.append(channel)
        return channel

    @property
    def registry(self) -> reg_grpc.RegistryServiceStub:
        return reg_grpc.RegistryServiceStub(self.channel(self.registry_addr))

    @property
    def features(self) -> fs_grpc.FeatureStoreServiceStub:
        return fs_grpc.FeatureStoreServiceStub(self.channel(self.features_settings.listen_addr))

    @property
    def gateway_addr(self) -> str:
        return self.gateway_settings.listen_addr

    async def start_features(self) -> None:
        from edgeloop.features.app import build_app

        self.features_server = await start_server(
            build_app(self.features_settings), self.features_settings
        )

    async def stop_features(self) -> None:
        assert self.features_server is not None
        await self.features_server.stop(1.0)
        self.features_server = None

    async def add_device(self, device_id: str, deployment: str) -> str:
        reply = await self.registry.RegisterDevice(
            reg_pb2.RegisterDeviceRequest(
                name=device_id, device_id=device_id, deployment=deployment
            ),
            metadata=bearer(ADMIN),
        )
        return reply.token

    async def put_deployment(self, name: str, version: str, create: bool = True) -> None:
        deployment = deployment_pb2.Deployment(
            name=name,
            model_name=MODEL,
            data_group=f"{name}-data",
            active=True,
            strategy=deployment_pb2.STRATEGY_DIRECT,
            selector=deployment_pb2.VersionSelector(version=version),
        )
        if create:
            await self.registry.CreateDeployment(
                reg_pb2.CreateDeploymentRequest(deployment=deployment), metadata=bearer(ADMIN)
            )
        else:
            await self.registry.UpdateDeployment(
                reg_pb2.UpdateDeploymentRequest(deployment=deployment), metadata=bearer(ADMIN)
            )

    async def observations(self, **query: Any) -> list[Any]:
        found = []
        async for page in self.features.ListObservations(
            fs_pb2.ListObservationsRequest(**query), timeout=30
        ):
            found.extend(page.observations)
        return found

    async def wait_observations(
        self, count: int, timeout_s: float = 180.0, **query: Any
    ) -> list[Any]:
        async with asyncio.timeout(timeout_s):
            while len(found := await self.observations(**query)) < count:
                await asyncio.sleep(0.2)
        return found

    def version_of(self, distance_mm: float) -> str:
        for version, bias in self.versions.items():
            if bias <= distance_mm <= bias + 100.0:
                return version
        raise AssertionError(f"{distance_mm} mm comes from no registered version")


async def _wait_until(predicate: Any, timeout_s: float = 120.0) -> None:
    """Poll ``predicate`` until it holds; fail after a generous deadline."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


async def _register_versions(plane: Plane, run_ids: tuple[str, ...]) -> None:
    for index, run_id in enumerate(run_ids):
        reply = await plane.registry.RegisterModelVersion(
            reg_pb2.RegisterModelVersionRequest(
                model_name=MODEL, run_id=run_id, artifact_path="model"
            ),
            metadata=bearer(ADMIN),
            timeout=300,
        )
        plane.versions[reply.version.version] = 1000.0 * (index + 1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plane(pg_cluster, logged_models, tmp_path_factory) -> AsyncIterator[Plane]:
    """Registry, features and gateway on one database, serving in-process on loopback."""
    from edgeloop.features.settings import Settings as FeaturesSettings
    from edgeloop.gateway.app import build_app as build_gateway
    from edgeloop.gateway.settings import Settings as GatewaySettings
    from edgeloop.registry.app import App as RegistryApp
    from edgeloop.registry.settings import Settings as RegistrySettings

    root = tmp_path_factory.mktemp("data-plane")
    database = pg_cluster.ensure_database(f"e2e_{uuid.uuid4().hex[:12]}")
    registry_settings = RegistrySettings(
        listen_addr=f"127.0.0.1:{free_port()}",
        database_url=database,
        mlflow_tracking_uri=logged_models.tracking_uri,
        admin_token=ADMIN,
        read_token=READ,
        model_repository=str(root / "models"),
        shutdown_grace_s=1.0,
        refresh_interval_s=60.0,
    )
    features_settings = FeaturesSettings(
        listen_addr=f"127.0.0.1:{free_port()}",
        database_url=database,
        object_store_dir=str(root / "objects"),
        ingest_workers=2,
        shutdown_grace_s=1.0,
    )
    gateway_settings = GatewaySettings(
        listen_addr=f"127.0.0.1:{free_port()}",
        registry_addr=registry_settings.listen_addr,
        registry_token=READ,
        features_addr=features_settings.listen_addr,
        model_repository=str(root / "models"),
        spool_dir=str(root / "spool"),
        forward_interval_ms=50,
        gateway_id="gw-e2e",
        shutdown_grace_s=1.0,
    )
    plane = Plane(root, registry_settings.listen_addr, features_settings, gateway_settings)
    registry = await start_server(RegistryApp(registry_settings), registry_settings)
    gateway = None
    # Everything started is stopped on every path, also when a later start fails.
    try:
        await plane.start_features()
        gateway = await start_server(build_gateway(gateway_settings), gateway_settings)
        plane.gateway_app = gateway.app
        await _register_versions(plane, logged_models.run_ids)
        yield plane
    finally:
        if gateway is not None:
            await gateway.stop(1.0)
        if plane.features_server is not None:
            await plane.stop_features()
        await registry.stop(1.0)
        for channel in plane.channels:
            await channel.close()


@pytest.fixture(scope="module")
def frames() -> list[tuple[bytes, float | None]]:
    """Frames rendered by the robot simulator, with their sensor readings."""
    return [(f.jpeg, f.sensor_mm) for f in render_dataset("beige", 40, seed=3)]


def frame_request(seq: int, jpeg: bytes, sensor_mm: float | None) -> gw_pb2.StreamRequest:
    frame = edge_pb2.Frame(seq=seq, jpeg=jpeg)
    frame.captured_at.GetCurrentTime()
    if sensor_mm is not None:
        frame.sensor_mm = sensor_mm
    return gw_pb2.StreamRequest(frame=frame)


def hello_request(device_id: str) -> gw_pb2.StreamRequest:
    return gw_pb2.StreamRequest(
        hello=edge_pb2.Hello(device_id=device_id, session_id=uuid.uuid4().hex, client_version="e2e")
    )


async def stream(
    address: str,
    device_id: str,
    token: str,
    messages: list[gw_pb2.StreamRequest],
    pause_s: float = 0.0,
    answers: list[gw_pb2.StreamResponse] | None = None,
    hold: tuple[int, asyncio.Event] | None = None,
) -> list[gw_pb2.StreamResponse]:
    """Send ``messages`` on one stream and return every answer.

    ``answers`` collects them as they come; with ``hold=(index, event)`` message ``index``
    is sent only once ``event`` is set (the stream stays open meanwhile).
    """
    answers = [] if answers is None else answers
    async with aio.insecure_channel(address) as channel:
        call = gw_grpc.EdgeGatewayServiceStub(channel).Stream(
            metadata=(("authorization", f"Bearer {token}"), ("x-device-id", device_id))
        )

        async def send() -> None:
            for index, message in enumerate(messages):
                if hold is not None and index == hold[0]:
                    await hold[1].wait()
                await call.write(message)
                if pause_s:
                    await asyncio.sleep(pause_s)
            await call.done_writing()

        sender = asyncio.create_task(send())
        async for answer in call:
            answers.append(answer)
        await sender
        return answers


def drive(
    device_id: str, frames: list, count: int, first_seq: int = 1
) -> list[gw_pb2.StreamRequest]:
    return [
        hello_request(device_id),
        *(
            frame_request(seq, *frames[seq % len(frames)])
            for seq in range(first_seq, first_seq + count)
        ),
    ]


async def test_simulated_robot_frames_become_rows(plane: Plane) -> None:
    await plane.put_deployment("parking", "1")
    token = await plane.add_device("car-1", "parking")
    summary = await drive_session_async(
        plane.gateway_addr, "car-1", token, "beige", runs=1, seed=1, prediction_timeout_s=10.0
    )
    sent = summary.delivery.frames
    assert sent > 5 and summary.delivery.predictions == sent and summary.delivery.errors == 0
    rows = await plane.wait_observations(sent, device_id="car-1")
    assert len(rows) == sent == len({r.observation_id for r in rows})
    objects = plane.features_settings.object_store_dir
    for row in rows:
        assert (row.device_id, row.deployment, row.data_group) == (
            "car-1",
            "parking",
            "parking-data",
        )
        assert (row.model_name, row.model_version, row.arm) == (MODEL, "1", "stable")
        assert plane.version_of(row.prediction_mm) == "1"
        assert row.session_id == summary.session_id
        where = locate(row.image_key)
        assert where.object_key.startswith(f"features/parking/{row.time.ToDatetime():%Y-%m-%d}/")
        with tarfile.open(Path(objects) / where.object_key) as pack:
            member = pack.getmember(f"{row.observation_id}.jpg")
        assert (member.offset_data, member.size) == (where.offset, where.length) != (None, 0)
    labelled = [r for r in rows if r.HasField("sensor_mm")]
    assert len(labelled) == summary.delivery.labelled > 0
    for row in labelled:
        assert row.error_mm == pytest.approx(row.prediction_mm - row.sensor_mm, abs=1e-2)


async def test_features_down_mid_stream_every_observation_once(plane: Plane, frames) -> None:
    await plane.put_deployment("outage", "1")
    token = await plane.add_device("car-outage", "outage")
    before = await stream(plane.gateway_addr, "car-outage", token, drive("car-outage", frames, 20))
    await plane.wait_observations(20, device_id="car-outage")
    await plane.stop_features()
    try:
        during = await stream(
            plane.gateway_addr, "car-outage", token, drive("car-outage", frames, 200, first_seq=21)
        )
        assert all(a.HasField("prediction") for a in during[1:]) and len(during) == 201
    finally:
        await plane.start_features()
    rows = await plane.wait_observations(220, device_id="car-outage")
    answered = {a.prediction.observation_id for a in before[1:] + during[1:]}
    assert len(rows) == 220 and {r.observation_id for r in rows} == answered
    assert sorted(r.seq for r in rows) == list(range(1, 221))


async def test_version_switch_while_ten_robots_stream(plane: Plane, frames) -> None:
    await plane.put_deployment("switch", "1")
    robots = {f"car-s{i}": await plane.add_device(f"car-s{i}", "switch") for i in range(10)}
    # The switch happens while all ten streams are open; its moments are conditions, not
    # durations: every robot has answers from version 1 before it, and frames 21-40 (message
    # 21 after the Hello) are sent once the gateway routes to version 2.
    answers: dict[str, list] = {device: [] for device in robots}
    switched = asyncio.Event()
    drives = [
        asyncio.create_task(
            stream(plane.gateway_addr, device, token, drive(device, frames, 40), pause_s=0.02,
                   answers=answers[device], hold=(21, switched))
        )
        for device, token in robots.items()
    ]
    await _wait_until(lambda: all(len(a) >= 6 for a in answers.values()))
    await plane.put_deployment("switch", "2", create=False)
    await _wait_until(lambda: plane.gateway_versions("switch") == {"2"})
    switched.set()
    results = await asyncio.gather(*drives)
    seen = set()
    for answers in results:
        assert all(a.HasField("prediction") for a in answers[1:]), "no frame may fail"
        assert sorted(a.prediction.seq for a in answers[1:]) == list(range(1, 41)), "none lost"
        for a in answers[1:]:
            assert a.prediction.model_version == plane.version_of(a.prediction.distance_mm)
            seen.add(a.prediction.model_version)
    assert seen == {"1", "2"}, "the switch happened while the robots streamed"
    rows = await plane.wait_observations(400, deployments=["switch"])
    assert len(rows) == 400
    assert all(r.model_version == plane.version_of(r.prediction_mm) for r in rows)


async def test_bad_input_is_refused_clearly(plane: Plane, frames) -> None:
    await plane.put_deployment("bad-input", "1")
    token = await plane.add_device("car-bad", "bad-input")
    jpeg, _ = frames[0]
    nan = frame_request(3, jpeg, None)
    nan.frame.sensor_mm = math.nan
    answers = await stream(
        plane.gateway_addr,
        "car-bad",
        token,
        [
            hello_request("car-bad"),
            frame_request(1, jpeg[:20] + b"\x00" * 500 + b"\xff\xd9", 100.0),
            frame_request(2, b"\xff\xd8\xff" + b"\x00" * (20 * 1024 * 1024), 100.0),
            nan,
            frame_request(4, jpeg, 120.0),
        ],
    )
    reasons = {a.error.seq: a.error.reason for a in answers if a.HasField("error")}
    assert reasons == {
        1: Reason.FRAME_ERROR_REASON_INVALID_JPEG,
        2: Reason.FRAME_ERROR_REASON_TOO_LARGE,
        3: Reason.FRAME_ERROR_REASON_INVALID_SENSOR,
    }
    assert [a.prediction.seq for a in answers if a.HasField("prediction")] == [4]
    for bad_device, bad_token in (("car-unknown", token), ("car-bad", "wrong-token")):
        with pytest.raises(aio.AioRpcError) as refused:
            await stream(plane.gateway_addr, bad_device, bad_token, [hello_request(bad_device)])
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(aio.AioRpcError) as early:
        await stream(plane.gateway_addr, "car-bad", token, [frame_request(1, jpeg, 1.0)])
    assert early.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    rows = await plane.wait_observations(1, device_id="car-bad")
    assert [r.seq for r in rows] == [4]


async def _wait_spooled(spool_dir: Path, records: int, timeout_s: float = 120.0) -> None:
    """Wait until the spool's segment files hold ``records`` whole records (nothing is acked).

    Counted by record, not by size: the records' framing and metadata made a byte total
    of the frames' JPEGs reachable one record early, and the kill then lost that record.
    """
    async with asyncio.timeout(timeout_s):
        while await asyncio.to_thread(count_records, spool_dir) < records:
            await asyncio.sleep(0.05)


async def test_gateway_killed_and_restarted_replays_its_spool(plane: Plane, frames) -> None:
    """A second gateway as a real process, killed with SIGKILL while features is down."""
    await plane.put_deployment("crash", "1")
    token = await plane.add_device("car-crash", "crash")
    address = f"127.0.0.1:{free_port()}"
    s = plane.gateway_settings
    env = {
        "EDGELOOP_LISTEN_ADDR": address,
        "EDGELOOP_REGISTRY_ADDR": s.registry_addr,
        "EDGELOOP_REGISTRY_TOKEN": s.registry_token,
        "EDGELOOP_FEATURES_ADDR": s.features_addr,
        "EDGELOOP_MODEL_REPOSITORY": s.model_repository,
        "EDGELOOP_LOG_FORMAT": "text",
        "EDGELOOP_SPOOL_DIR": str(plane.root / "crash-spool"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    process = ServiceProcess("edgeloop.gateway", env, plane.root / "crash-gateway.log")
    try:
        await asyncio.to_thread(process.start, True, GATEWAY_START_S)
        await plane.stop_features()
        try:
            answers = await stream(address, "car-crash", token, drive("car-crash", frames, 50))
            assert [a.HasField("prediction") for a in answers[1:]] == [True] * 50
            # The answer precedes the group commit: wait until the 50 records are written
            # (SIGKILL loses nothing a write() handed to the kernel).
            await _wait_spooled(plane.root / "crash-spool", 50)
            process.kill()
        finally:
            await plane.start_features()
        assert await plane.observations(device_id="car-crash") == []
        await asyncio.to_thread(process.start, True, GATEWAY_START_S)
        rows = await plane.wait_observations(50, device_id="car-crash")
    finally:
        await asyncio.to_thread(process.stop)
    assert {r.observation_id for r in rows} == {a.prediction.observation_id for a in answers[1:]}


async def test_a_device_without_deployment_loses_no_frame(plane: Plane, frames) -> None:
    """Issue 16: such frames were answered, then refused by features and dropped."""
    token = await plane.add_device("car-unassigned", "")
    answers = await stream(plane.gateway_addr, "car-unassigned", token,
                           drive("car-unassigned", frames, 30))
    assert answers[0].welcome.deployment == "unassigned"
    predictions = [a.prediction for a in answers[1:]]
    assert len(predictions) == 30 and not any(p.HasField("distance_mm") for p in predictions)
    rows = await plane.wait_observations(30, device_id="car-unassigned")
    assert {o.observation_id for o in rows} == {p.observation_id for p in predictions}
    assert {(r.deployment, r.data_group) for r in rows} == {("unassigned", "unassigned")}
    assert sum(r.HasField("sensor_mm") for r in rows) == sum(
        f.frame.HasField("sensor_mm") for f in drive("car-unassigned", frames, 30)[1:])
    dead = await plane.features.ListDeadLetters(dl_pb2.ListDeadLettersRequest(), timeout=30)
    assert dead.total == 0

    await plane.put_deployment("assigned-later", "1")
    await plane.registry.AssignDevices(
        reg_pb2.AssignDevicesRequest(deployment="assigned-later", device_ids=["car-unassigned"]),
        metadata=bearer(ADMIN), timeout=30)
    async with asyncio.timeout(30):
        while True:
            later = await stream(plane.gateway_addr, "car-unassigned", token,
                                 drive("car-unassigned", frames, 1, first_seq=100))
            if later[1].prediction.HasField("distance_mm"):
                break
            await asyncio.sleep(0.2)
    assert later[0].welcome.deployment == "assigned-later"
    assert plane.version_of(later[1].prediction.distance_mm) == "1"
