"""On-device inference: LiteRT model, verified store, resumable download, background swap.

The model files are real TFLite files (tests/data, made by make_tiny_models.py); the
gateway side is a real grpc.aio server implementing ``DownloadModel`` whose faults the
tests choose (break mid-stream, truncate, tamper). The real gateway's download is
tested in services/gateway/tests/test_device_models.py and end to end in
tests/test_device_loop.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.edge_client.inference.device_model import DeviceModel
from edgeloop.edge_client.inference.download import ModelFetcher
from edgeloop.edge_client.inference.litert import LiteRTModel, ModelLoadError, decode_rgb
from edgeloop.edge_client.inference.store import ModelIdentity, ModelStore, VerificationError
from edgeloop.edge_client.simulate import render_dataset
from edgeloop.edge_client.stream.backoff import Backoff
from grpc import aio

CHUNK = 256
"""Small chunks: the tiny models are about 2 kB."""
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    """Versions "1" (answers 1000-1100 mm) and "2" (2000-2100 mm) as TFLite bytes."""
    return {version: (DATA / f"tiny_v{version}.tflite").read_bytes() for version in ("1", "2")}


def identity(version: str, data: bytes) -> ModelIdentity:
    return ModelIdentity("distance", version, len(data), hashlib.sha256(data).hexdigest())


def frame_jpeg() -> bytes:
    return next(iter(render_dataset("beige", 1, seed=2))).jpeg


def test_litert_predicts_a_frame_and_refuses_a_non_model(models, tmp_path) -> None:
    path = tmp_path / "1.tflite"
    path.write_bytes(models["1"])
    model = LiteRTModel(path, "distance", "1", threads=1)
    jpeg = frame_jpeg()
    answer = model.predict(jpeg)
    rgb = decode_rgb(jpeg)
    expected = 1000.0 + float(np.mean(rgb / 255.0)) * 100.0  # resize keeps the mean closely
    assert (answer.model_name, answer.model_version) == ("distance", "1")
    assert answer.distance_mm == pytest.approx(expected, abs=1.0)
    assert answer.inference_ms > 0
    assert model.predict_rgb(rgb[:120, :160]) != answer.distance_mm  # input resized per shape
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 100)
    with pytest.raises(ModelLoadError):
        LiteRTModel(junk, "distance", "9")


def test_store_refuses_a_current_model_damaged_on_disk(models, tmp_path) -> None:
    store = ModelStore(tmp_path / "store")
    good = identity("1", models["1"])
    store.part_path(good).parent.mkdir(parents=True)
    store.part_path(good).write_bytes(models["1"])
    store.commit(good)
    store.set_current(good)
    assert store.current() == good
    data = bytearray(models["1"])
    data[len(data) // 2] ^= 0xFF
    store.path(good).write_bytes(bytes(data))
    assert store.current() is None  # refused, never loaded
    assert DeviceModel(store).load_stored() is False


class DownloadDouble(gw_grpc.EdgeGatewayServiceServicer):
    """DownloadModel with scripted faults per attempt: break, truncate, tamper or serve."""

    def __init__(self, files: dict[str, bytes], faults: list[str],
                 twins: dict[str, bytes] | None = None) -> None:
        self.files = files
        self.twins = twins or {}
        """Each version's quantized twin (DownloadModelRequest.quantized)."""
        self.faults = faults
        self.requests: list[tuple[str, int]] = []
        self.quantized: list[bool] = []

    async def DownloadModel(  # noqa: N802
            self, request: gw_pb2.DownloadModelRequest,
            context: aio.ServicerContext) -> AsyncIterator[gw_pb2.DownloadModelResponse]:
        self.requests.append((request.model_version, request.offset))
        self.quantized.append(request.quantized)
        data = (self.twins if request.quantized else self.files)[request.model_version]
        fault = self.faults.pop(0) if self.faults else "serve"
        sha = hashlib.sha256(data).hexdigest()
        sent = data
        if fault == "tamper":
            flipped = bytearray(data)
            flipped[len(data) // 3] ^= 0x01
            sent = bytes(flipped)
        for offset in range(request.offset, len(data), CHUNK):
            if fault == "break" and offset >= request.offset + 2 * CHUNK:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "WiFi dropped (test double)")
            if fault == "truncate" and offset >= len(data) // 2:
                return  # ends cleanly, but short
            yield gw_pb2.DownloadModelResponse(size_bytes=len(data), sha256=sha, offset=offset,
                                               data=sent[offset:offset + CHUNK])


@pytest.fixture
async def double_gateway(models):
    servers = []

    async def start(faults: list[str],
                    twins: dict[str, bytes] | None = None) -> tuple[DownloadDouble, str]:
        servicer = DownloadDouble(models, faults, twins)
        server = aio.server()
        gw_grpc.add_EdgeGatewayServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    try:
        yield start
    finally:
        for server in servers:
            await server.stop(0)


async def test_a_broken_download_resumes_from_the_bytes_on_disk(models, tmp_path,
                                                                double_gateway) -> None:
    double, address = await double_gateway(["break"])
    store = ModelStore(tmp_path / "store")
    fetcher = ModelFetcher(address, (("authorization", "Bearer t"), ("x-device-id", "car")))
    wanted = identity("2", models["2"])
    with pytest.raises(aio.AioRpcError):
        await fetcher.fetch(wanted, store)
    held = store.part_path(wanted).stat().st_size
    assert held == 2 * CHUNK and not store.has(wanted)
    path = await fetcher.fetch(wanted, store)
    assert double.requests == [("2", 0), ("2", held)]
    assert path.read_bytes() == models["2"]


async def test_truncated_and_tampered_downloads_are_refused_retried_and_never_loaded(
        models, tmp_path, double_gateway) -> None:
    double, address = await double_gateway(["truncate", "tamper"])
    store = ModelStore(tmp_path / "store")
    first = identity("1", models["1"])
    store.part_path(first).parent.mkdir(parents=True)
    store.part_path(first).write_bytes(models["1"])
    store.commit(first)
    store.set_current(first)
    device = DeviceModel(store, threads=1, backoff=Backoff(0.01, 0.05))
    assert device.load_stored() and device.version == "1"
    device.start(ModelFetcher(address, ()))
    try:
        device.want(edge_pb2.ModelUpdate(model_name="distance", model_version="2",
                                         size_bytes=len(models["2"]),
                                         sha256=hashlib.sha256(models["2"]).hexdigest()))
        jpeg = frame_jpeg()
        versions = set()
        async with asyncio.timeout(60):
            while device.version != "2":
                answer = await device.predict(jpeg)  # keeps predicting on version 1 meanwhile
                assert answer is not None
                versions.add(answer.model_version)
                assert 1000 <= answer.distance_mm <= 1100
                await asyncio.sleep(0.01)
    finally:
        await device.stop()
    assert versions == {"1"}
    assert len(device.refused) == 2
    assert "truncated" in device.refused[0] and "tampered" in device.refused[1]
    assert [r[1] for r in double.requests] == [0, 0, 0]  # refused bytes are never resumed
    assert [s.model_version for s in device.switches] == ["1", "2"]
    answer = await device.predict(jpeg)
    assert answer is not None and 2000 <= answer.distance_mm <= 2100
    assert store.current() == identity("2", models["2"])
    assert not store.path(first).exists()  # the old version is pruned after the swap


async def test_chunks_of_another_file_are_refused(models, tmp_path, double_gateway) -> None:
    _, address = await double_gateway([])
    store = ModelStore(tmp_path / "store")
    announced = ModelIdentity("distance", "1", len(models["1"]), "0" * 64)
    with pytest.raises(VerificationError, match="different file"):
        await ModelFetcher(address, ()).fetch(announced, store)
    assert not store.part_path(announced).exists()


async def test_a_robot_that_runs_twins_swaps_to_its_versions_twin_and_keeps_it(
        models, tmp_path, double_gateway) -> None:
    # Version 2's file stands in for version 1's quantized twin: its answers tell them apart.
    double, address = await double_gateway([], twins={"1": models["2"]})
    store = ModelStore(tmp_path / "store")
    device = DeviceModel(store, threads=1, backoff=Backoff(0.01, 0.05), quantized=True)
    device.start(ModelFetcher(address, ()))
    float_file = identity("1", models["1"])
    twin = ModelIdentity("distance", "1", len(models["2"]), hashlib.sha256(models["2"]).hexdigest(),
                         quantized=True)
    jpeg = frame_jpeg()
    try:
        device.want(edge_pb2.ModelUpdate(model_name="distance", model_version="1",
                                         size_bytes=float_file.size_bytes,
                                         sha256=float_file.sha256))
        async with asyncio.timeout(60):
            while device.identity != float_file:
                await asyncio.sleep(0.01)
        device.want(edge_pb2.ModelUpdate(model_name="distance", model_version="1",  # again
                                         size_bytes=float_file.size_bytes,
                                         sha256=float_file.sha256))
        # The gateway checked the twin: the same version, another file.
        device.want(edge_pb2.ModelUpdate(model_name="distance", model_version="1",
                                         size_bytes=twin.size_bytes, sha256=twin.sha256,
                                         quantized=True))
        async with asyncio.timeout(60):
            while device.identity != twin:
                await asyncio.sleep(0.01)
        answer = await device.predict(jpeg)
    finally:
        await device.stop()
    assert answer is not None and answer.model_version == "1"
    assert 2000 <= answer.distance_mm <= 2100, "the twin's file answers now"
    assert double.quantized == [False, True], "each file fetched once, the twin as the twin"
    assert [s.model_version for s in device.switches] == ["1", "1"]
    assert store.path(twin).name == "1.quantized.tflite" and store.path(twin).exists()
    assert not store.path(float_file).exists(), "the float file pruned after the swap"
    restarted = DeviceModel(store, threads=1, quantized=True)
    assert restarted.load_stored() and restarted.identity == twin  # kept over a restart


def test_the_hello_asks_for_twins_only_when_the_robot_runs_them() -> None:
    from edgeloop.edge_client.inference.onboard import with_capability

    assert "quantized_model" not in with_capability(None).capabilities
    asked = with_capability(None, quantized=True).capabilities
    assert {"device_inference", "quantized_model"} <= set(asked)
    assert with_capability(with_capability(None, True), True).capabilities == asked
