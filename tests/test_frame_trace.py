"""One frame's trace across real services on loopback, from the span files and a collector.

The registry runs in-process; features and the gateway run as real processes with
``EDGELOOP_TRACE_FILE`` (the local stack's exporter) and an OTLP endpoint (the gateway
``EDGELOOP_OTLP_ENDPOINT``, features the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``) of an
OTLP/gRPC receiver the test runs (``edgeloop.testing.OtlpReceiver``, OpenTelemetry's own
``TraceService``; Jaeger cannot be installed here). The same checks run on both: the
gateway's frame span, its model-host child, and the features ingest batch that links the
frame, with the database calls beneath it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

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
from edgeloop.features.images import locate
from edgeloop.platform import bearer
from edgeloop.platform.server import start_server
from edgeloop.platform.span_files import Span, read_spans, trace_tree
from edgeloop.testing import OtlpReceiver, ReceivedSpan, ServiceProcess, free_port
from grpc import aio

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(900)]
ADMIN = "trace-admin-token-0123456789abcdef"
READ = "trace-read-token-0123456789abcdef"
FRAMES = 4


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def traced(pg_cluster, logged_models, tmp_path_factory) -> AsyncIterator[dict]:
    """Frames streamed through a traced gateway and features; the answers and span files."""
    from edgeloop.registry.app import App as RegistryApp
    from edgeloop.registry.settings import Settings as RegistrySettings

    root = tmp_path_factory.mktemp("traces")
    database = pg_cluster.ensure_database(f"trace_{uuid.uuid4().hex[:12]}")
    registry_settings = RegistrySettings(
        listen_addr=f"127.0.0.1:{free_port()}", database_url=database,
        mlflow_tracking_uri=logged_models.tracking_uri, admin_token=ADMIN, read_token=READ,
        model_repository=str(root / "models"), shutdown_grace_s=1.0)
    registry = await start_server(RegistryApp(registry_settings), registry_settings)
    collector = OtlpReceiver().__enter__()
    features = ServiceProcess("edgeloop.features", {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.endpoint}",
        "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}", "EDGELOOP_DATABASE_URL": database,
        "EDGELOOP_OBJECT_STORE_DIR": str(root / "objects"),
        "EDGELOOP_TRACE_FILE": str(root / "spans" / "features.jsonl")}, root / "features.log")
    gateway = ServiceProcess("edgeloop.gateway", {
        "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "EDGELOOP_REGISTRY_ADDR": registry.address, "EDGELOOP_REGISTRY_TOKEN": READ,
        "EDGELOOP_FEATURES_ADDR": features.address,
        "EDGELOOP_MODEL_REPOSITORY": str(root / "models"),
        "EDGELOOP_SPOOL_DIR": str(root / "spool"), "EDGELOOP_FORWARD_INTERVAL_MS": "50",
        "EDGELOOP_OTLP_ENDPOINT": collector.endpoint,
        "EDGELOOP_TRACE_FILE": str(root / "spans" / "gateway.jsonl")}, root / "gateway.log")
    try:
        await asyncio.to_thread(features.start)
        token = await _deployment_with_device(registry.address, logged_models.run_ids[0])
        await asyncio.to_thread(gateway.start, True, 300.0)
        answers = await _stream(gateway.address, token)
        image_keys = await _wait_for_rows(features.address, FRAMES)
    finally:
        # SIGTERM flushes each process's batched span exporters before it exits. All are
        # stopped before any exit code is checked, so a failed check leaks nothing.
        exits = {"gateway": gateway.stop(), "features": features.stop()}
        await registry.stop(1.0)
        collector.__exit__(None, None, None)
    assert exits == {"gateway": 0, "features": 0}
    yield {"answers": answers, "image_keys": image_keys,
           "spans": list(read_spans(root / "spans")),
           "collected": [_span(s) for s in collector.spans],
           "pids": {"gateway": gateway.process.pid, "features": features.process.pid}}


def _span(received: ReceivedSpan) -> Span:
    """A span as the collector received it, in the shape `edgeloop trace` reads from files."""
    return Span(trace_id=received.trace_id, span_id=received.span_id,
                parent_id=received.parent_id, name=received.name, service=received.service,
                start=datetime.fromtimestamp(received.start_ns / 1e9, UTC),
                end=datetime.fromtimestamp(received.end_ns / 1e9, UTC),
                status=received.status, attributes={**received.attributes,
                                                    "process.pid": received.pid},
                links=received.links)


async def _deployment_with_device(registry_addr: str, run_id: str) -> str:
    async with aio.insecure_channel(registry_addr) as channel:
        stub, auth = reg_grpc.RegistryServiceStub(channel), bearer(ADMIN)
        version = await stub.RegisterModelVersion(reg_pb2.RegisterModelVersionRequest(
            model_name="distance", run_id=run_id), metadata=auth, timeout=300)
        await stub.CreateDeployment(reg_pb2.CreateDeploymentRequest(
            deployment=deployment_pb2.Deployment(
                name="parking", model_name="distance", strategy=deployment_pb2.STRATEGY_DIRECT,
                selector=deployment_pb2.VersionSelector(version=version.version.version),
                active=True)),
            metadata=auth, timeout=30)
        device = await stub.RegisterDevice(reg_pb2.RegisterDeviceRequest(
            device_id="car-1", name="car", deployment="parking"), metadata=auth, timeout=30)
        return device.token


async def _stream(address: str, token: str) -> list[edge_pb2.Prediction]:
    frames = list(render_dataset("beige", FRAMES, seed=5))
    requests = [gw_pb2.StreamRequest(hello=edge_pb2.Hello(device_id="car-1", session_id="s1"))]
    for seq, frame in enumerate(frames, start=1):
        message = edge_pb2.Frame(seq=seq, jpeg=frame.jpeg, sensor_mm=frame.sensor_mm or 100.0)
        message.captured_at.GetCurrentTime()
        requests.append(gw_pb2.StreamRequest(frame=message))
    async with aio.insecure_channel(address) as channel:
        call = gw_grpc.EdgeGatewayServiceStub(channel).Stream(
            iter(requests),
            metadata=(("authorization", f"Bearer {token}"), ("x-device-id", "car-1")),
            timeout=120)
        answers = [answer async for answer in call]
    return [a.prediction for a in answers if a.HasField("prediction")]


async def _wait_for_rows(features_addr: str, count: int) -> dict[str, str]:
    """Each stored observation's image key, once ``count`` are stored."""
    async with aio.insecure_channel(features_addr) as channel:
        stub = fs_grpc.FeatureStoreServiceStub(channel)
        for _ in range(300):
            pages = stub.ListObservations(fs_pb2.ListObservationsRequest(deployments=["parking"]),
                                          timeout=10)
            keys = {o.observation_id: o.image_key async for p in pages for o in p.observations}
            if len(keys) >= count:
                return keys
            await asyncio.sleep(0.2)
    raise AssertionError(f"features never stored {count} observations")


def _walk(spans: list[Span]) -> list[Span]:
    found = []
    for span in spans:
        found += [span, *_walk(span.children)]
    return found


@pytest.mark.parametrize("source", ["spans", "collected"], ids=["files", "otlp"])
async def test_a_frame_yields_connected_spans_across_services(traced: dict, source: str) -> None:
    answers = traced["answers"]
    assert len(answers) == FRAMES and all(a.model_version for a in answers)
    prediction = answers[0]
    roots = trace_tree(traced[source], prediction.trace_id)
    frame = next(r for r in roots if r.name == "gateway.frame")
    assert frame.service == "edgeloop-gateway" and frame.trace_id == prediction.trace_id
    assert frame.attributes["edgeloop.observation_id"] == prediction.observation_id
    assert frame.attributes["edgeloop.deployment"] == "parking"
    host = next(c for c in frame.children if c.name == "model_host.predict")
    assert host.attributes["edgeloop.model_version"] == prediction.model_version
    assert "edgeloop.batch_size" in host.attributes

    # The features side is its own trace (the Ingest call), linked to every frame it carries.
    batch = next(s for s in _walk(roots) if s.name == "features.ingest_batch")
    assert batch.service == "edgeloop-features" and prediction.trace_id in batch.links
    beneath = _walk([batch])
    database = [s for s in beneath if s.attributes.get("db.system") == "postgresql"]
    assert any("INSERT" in s.attributes.get("db.statement", "") for s in database), \
        "the batch's database insert is a span beneath it"
    packs = {s.attributes["edgeloop.object_key"] for s in beneath if s.name == "objectstore.put"}
    assert locate(traced["image_keys"][prediction.observation_id]).object_key in packs, \
        "the pack holding the frame's image was written beneath the batch"


async def test_every_frame_is_its_own_trace(traced: dict) -> None:
    trace_ids = {a.trace_id for a in traced["answers"]}
    assert len(trace_ids) == FRAMES
    frames = [s for s in traced["spans"] if s.name == "gateway.frame"]
    assert {s.trace_id for s in frames} >= trace_ids


async def test_the_collector_got_each_process_spans_with_its_pid(traced: dict) -> None:
    """The OTLP spans came from the real processes (their pids), the database layer's too."""
    collected = traced["collected"]
    pids = {s.service: s.attributes["process.pid"] for s in collected
            if s.name in ("gateway.frame", "features.ingest_batch")}
    assert pids == {"edgeloop-gateway": traced["pids"]["gateway"],
                    "edgeloop-features": traced["pids"]["features"]}
    database = [s for s in collected if s.attributes.get("db.system") == "postgresql"]
    assert {s.attributes["process.pid"] for s in database} >= {traced["pids"]["features"]}
    # the collector saw every frame's trace the files saw
    frames = {s.trace_id for s in collected if s.name == "gateway.frame"}
    assert frames == {s.trace_id for s in traced["spans"] if s.name == "gateway.frame"}
