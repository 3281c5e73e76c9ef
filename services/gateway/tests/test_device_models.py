"""Robots that predict on the device: model downloads, version notices, device predictions.

Registry and features are contract doubles (see conftest.py); the gateway is real. The
TFLite files here are random bytes: the gateway only stores, hashes and streams them
(LiteRT loading is tested in edge_client/tests/test_inference.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.gateway.hosts.embedded import EmbeddedConfig, EmbeddedHost
from edgeloop.gateway.hosts.protocol import ProtocolServicer, ServingProtocol
from edgeloop.gateway.hosts.repository import ModelRepository
from edgeloop.testing import free_port
from grpc import aio

Reason = edge_pb2.FrameErrorReason
DEVICE = observation_pb2.PredictionSource.PREDICTION_SOURCE_DEVICE
SERVER = observation_pb2.PredictionSource.PREDICTION_SOURCE_SERVER
METADATA = (("authorization", "Bearer secret-1"), ("x-device-id", "robot-1"))


@pytest.fixture(scope="module")
def tflite_files(model_repository: Path) -> dict[str, bytes]:
    """``<repo>/distance/{1,2}.tflite``: 600 kB of random bytes each (three chunks)."""
    files = {}
    for version in ("1", "2"):
        data = os.urandom(600_000)
        (model_repository / "distance" / f"{version}.tflite").write_bytes(data)
        files[version] = data
    return files


async def _download(gw, version: str, offset: int = 0,
                    metadata=METADATA) -> list[gw_pb2.DownloadModelResponse]:
    call = gw.stub.DownloadModel(gw_pb2.DownloadModelRequest(
        model_name="distance", model_version=version, offset=offset), metadata=metadata)
    return [chunk async for chunk in call]


async def test_download_streams_chunks_with_size_and_hash_and_resumes(
        start_gateway, tflite_files) -> None:
    data = tflite_files["1"]
    async with start_gateway() as gw:
        chunks = await _download(gw, "1")
        assert len(chunks) >= 3
        assert b"".join(c.data for c in chunks) == data
        assert {(c.size_bytes, c.sha256) for c in chunks} == {
            (len(data), hashlib.sha256(data).hexdigest())}
        offsets = [c.offset for c in chunks]
        assert offsets == [sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))]

        resumed = await _download(gw, "1", offset=400_000)
        assert resumed[0].offset == 400_000
        assert b"".join(c.data for c in resumed) == data[400_000:]


async def test_download_errors_name_the_problem(start_gateway, tflite_files) -> None:
    async with start_gateway() as gw:
        with pytest.raises(aio.AioRpcError) as beyond:
            await _download(gw, "1", offset=len(tflite_files["1"]) + 1)
        assert beyond.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "offset" in beyond.value.details()
        with pytest.raises(aio.AioRpcError) as unpublished:
            await _download(gw, "3")  # a SavedModel, but no TFLite file
        assert unpublished.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(aio.AioRpcError) as other_model:
            call = gw.stub.DownloadModel(gw_pb2.DownloadModelRequest(
                model_name="someone-elses", model_version="1"), metadata=METADATA)
            [c async for c in call]
        assert other_model.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(aio.AioRpcError) as traversal:
            await _download(gw, "../../1")
        assert traversal.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "model_version" in traversal.value.details()
        with pytest.raises(aio.AioRpcError) as bad_token:
            await _download(gw, "1", metadata=(("authorization", "Bearer wrong"),
                                               ("x-device-id", "robot-1")))
        assert bad_token.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _device_hello() -> gw_pb2.StreamRequest:
    return gw_pb2.StreamRequest(hello=edge_pb2.Hello(
        device_id="robot-1", session_id="s-device", client_version="test",
        capabilities=["tof", "device_inference"]))


async def test_welcome_names_the_device_model_and_a_change_is_announced_on_the_stream(
        start_gateway, deployments, tflite_files, requests) -> None:
    async with start_gateway() as gw:
        call = gw.open("robot-1", "secret-1")
        await call.write(_device_hello())
        welcome = (await asyncio.wait_for(call.read(), 30)).welcome
        assert (welcome.model.model_name, welcome.model.model_version, welcome.model.arm) == (
            "distance", "1", "stable")
        assert welcome.model.sha256 == hashlib.sha256(tflite_files["1"]).hexdigest()
        assert welcome.model.size_bytes == len(tflite_files["1"])

        gw.registry.put_deployment(deployments.direct("parking", "2"))
        update = await asyncio.wait_for(call.read(), 30)
        assert update.WhichOneof("kind") == "model_update"
        assert (update.model_update.model_version, update.model_update.sha256) == (
            "2", hashlib.sha256(tflite_files["2"]).hexdigest())
        await call.done_writing()
        async with asyncio.timeout(30):  # the stream ends cleanly with no more notices
            assert await call.read() is aio.EOF
        assert await call.code() == grpc.StatusCode.OK

        # A client that does not run models itself is not told.
        plain = await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1")])
        assert not plain[0].welcome.HasField("model")


def _device_frame(requests, seq: int, jpeg: bytes, distance_mm: float,
                  version: str = "1", quantized: bool = False) -> gw_pb2.StreamRequest:
    request = requests.frame(seq, jpeg, sensor_mm=400.0)
    request.frame.device_prediction.CopyFrom(edge_pb2.DevicePrediction(
        distance_mm=distance_mm, model_name="distance", model_version=version, inference_ms=2.5,
        quantized=quantized))
    return request


async def test_device_predictions_are_recorded_without_predicting_again(
        start_gateway, requests, jpegs, answer_version) -> None:
    async with start_gateway() as gw:
        answers = await gw.exchange("robot-1", "secret-1", [
            _device_hello(), _device_frame(requests, 1, jpegs[0], 412.5),
            requests.frame(2, jpegs[1], sensor_mm=400.0),
            _device_frame(requests, 3, jpegs[2], math.nan),
            _device_frame(requests, 4, jpegs[0], 413.0, quantized=True)])
        by_seq = {a.prediction.seq: a.prediction for a in answers if a.HasField("prediction")}
        assert by_seq[1].distance_mm == pytest.approx(412.5)  # not a server answer (>= 1000)
        assert (by_seq[1].model_version, by_seq[1].arm) == ("1", "stable")
        assert answer_version(by_seq[2].distance_mm) == "1"
        errors = [a.error for a in answers if a.HasField("error")]
        assert [(e.seq, e.reason) for e in errors] == [
            (3, Reason.FRAME_ERROR_REASON_INVALID_DEVICE_PREDICTION)]
        assert "frame.device_prediction.distance_mm" in errors[0].message

        await gw.features.wait_for(4)  # the refused frame is still recorded, unpredicted
        stored = {o.seq: o for o in gw.features.stored.values()}
        device, served = stored[1], stored[2]
        assert device.prediction_source == DEVICE and not device.device_quantized
        assert stored[4].prediction_source == DEVICE and stored[4].device_quantized
        assert not served.device_quantized
        assert device.prediction_mm == pytest.approx(412.5)
        assert device.error_mm == pytest.approx(12.5)
        assert (device.model_name, device.model_version, device.arm) == ("distance", "1", "stable")
        assert not device.HasField("server_shadow")
        assert served.prediction_source == SERVER
        assert not stored[3].HasField("prediction_mm")


async def test_deployment_can_ask_for_a_server_shadow_of_device_predictions(
        start_gateway, deployments, requests, jpegs, answer_version) -> None:
    async with start_gateway() as gw:
        shadowed = deployments.direct("parking", "1")
        shadowed.device_shadow = True
        gw.registry.put_deployment(shadowed)
        await gw.wait_state(lambda: gw.app.state.get("parking").device_shadow)
        await gw.exchange("robot-1", "secret-1", [
            _device_hello(), _device_frame(requests, 1, jpegs[0], 412.5)])
        await gw.features.wait_for(1)
        (obs,) = gw.features.stored.values()
        assert obs.prediction_mm == pytest.approx(412.5) and obs.prediction_source == DEVICE
        shadow = obs.server_shadow
        assert (shadow.arm, shadow.model_name, shadow.model_version) == ("stable", "distance", "1")
        assert answer_version(shadow.prediction_mm) == "1"
        assert not obs.shadow_predictions


async def test_a_version_whose_tflite_file_comes_later_is_announced_when_it_appears(
        start_gateway, deployments, model_repository) -> None:
    late_file = model_repository / "distance" / "3.tflite"
    try:
        async with start_gateway() as gw:
            gw.registry.put_deployment(deployments.direct("parking", "3"))
            await gw.wait_state(lambda: gw.app.state.get("parking").arms["stable"].version == "3")
            call = gw.open("robot-1", "secret-1")
            await call.write(_device_hello())
            welcome = (await asyncio.wait_for(call.read(), 30)).welcome
            assert welcome.model.model_version == "3" and not welcome.model.sha256
            data = os.urandom(1000)
            late_file.write_bytes(data)  # the registry's background conversion finished
            update = await asyncio.wait_for(call.read(), 30)
            assert update.model_update.model_version == "3"
            assert update.model_update.sha256 == hashlib.sha256(data).hexdigest()
            await call.done_writing()
    finally:
        late_file.unlink(missing_ok=True)


def _quantized_hello() -> gw_pb2.StreamRequest:
    hello = _device_hello()
    hello.hello.capabilities.append("quantized_model")
    return hello


async def test_a_robot_that_runs_quantized_twins_gets_one_once_the_gateway_runs_it(
        start_gateway, tflite_files, model_repository) -> None:
    twin_file = model_repository / "distance" / "1.quantized.tflite"
    twin = os.urandom(150_000)
    twin_file.write_bytes(twin)
    decided: dict[str, bool | None] = {"1": None}  # the host's check of the twin, not done yet
    try:
        async with start_gateway() as gw:
            gw.app.service.models.twin = lambda key: decided.get(key.version, False)
            call = gw.open("robot-1", "secret-1")
            await call.write(_quantized_hello())
            welcome = (await asyncio.wait_for(call.read(), 30)).welcome
            # Not checked yet: the float file, as to any robot.
            assert (welcome.model.model_version, welcome.model.quantized) == ("1", False)
            assert welcome.model.sha256 == hashlib.sha256(tflite_files["1"]).hexdigest()

            decided["1"] = True  # the gateway's host now runs the twin: it agreed
            update = (await asyncio.wait_for(call.read(), 30)).model_update
            assert (update.model_version, update.quantized) == ("1", True)
            assert (update.size_bytes, update.sha256) == (len(twin),
                                                           hashlib.sha256(twin).hexdigest())
            chunks = [c async for c in gw.stub.DownloadModel(gw_pb2.DownloadModelRequest(
                model_name="distance", model_version="1", quantized=True), metadata=METADATA)]
            assert b"".join(c.data for c in chunks) == twin
            assert {c.sha256 for c in chunks} == {update.sha256}
            await call.done_writing()

            # A robot that did not declare it keeps the float file, twin or not.
            plain = await gw.exchange("robot-1", "secret-1", [_device_hello()])
            assert not plain[0].welcome.model.quantized
            assert plain[0].welcome.model.sha256 == hashlib.sha256(tflite_files["1"]).hexdigest()
            # A twin the host refused (or a gateway that does not run twins): the float file.
            decided["1"] = False
            refused = await gw.exchange("robot-1", "secret-1", [_quantized_hello()])
            assert not refused[0].welcome.model.quantized
    finally:
        twin_file.unlink()


async def test_a_version_without_a_quantized_twin_cannot_be_downloaded_as_one(
        start_gateway, tflite_files) -> None:
    async with start_gateway() as gw:
        with pytest.raises(aio.AioRpcError) as missing:
            call = gw.stub.DownloadModel(gw_pb2.DownloadModelRequest(
                model_name="distance", model_version="1", quantized=True), metadata=METADATA)
            [c async for c in call]
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert "quantized twin" in missing.value.details()


@pytest.fixture
async def tf_serving_protocol(model_repository: Path) -> AsyncIterator[str]:
    """TF Serving's protocol over the model repository on loopback (edgeloop's own server,
    the one Ray Serve runs: TF Serving cannot be installed here); yields its address."""
    host = EmbeddedHost(EmbeddedConfig(runtime="tensorflow"))
    server = aio.server()
    ProtocolServicer(ServingProtocol(host, ModelRepository(str(model_repository)))) \
        .add_to_server(server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    try:
        yield address
    finally:
        await server.stop(0)
        await host.close()


async def test_behind_tf_serving_the_gateway_checks_a_twin_before_robots_get_it(
        start_gateway, tflite_files, model_repository, tf_serving_protocol, requests,
        jpegs, convert_tflite) -> None:
    twin_file = convert_tflite(model_repository / "distance" / "1",
                               model_repository / "distance" / "1.quantized.tflite",
                               quantized=True)
    twin = twin_file.read_bytes()
    try:
        async with start_gateway(model_host="tfserving",
                                 tfserving_addr=tf_serving_protocol) as gw:
            assert gw.app.twins is not None  # no embedded host: the gateway judges twins
            # Camera frames served through TF Serving, a batch each: what the twin will be
            # checked on (the first frame of each of the last 8 batches).
            for seq in range(8):
                served = await gw.exchange("robot-1", "secret-1", [
                    requests.hello("robot-1"), requests.frame(1, jpegs[seq % len(jpegs)])])
                assert [r.WhichOneof("kind") for r in served] == ["welcome", "prediction"]
            assert gw.app.twins.served.check_frames(240, 320)[1] == "served"
            call = gw.open("robot-1", "secret-1")
            await call.write(_quantized_hello())
            welcome = (await asyncio.wait_for(call.read(), 30)).welcome
            # Not judged yet: the float file first.
            assert (welcome.model.model_version, welcome.model.quantized) == ("1", False)
            update = (await asyncio.wait_for(call.read(), 60)).model_update
            assert (update.model_version, update.quantized) == ("1", True)
            assert update.sha256 == hashlib.sha256(twin).hexdigest()
            await call.done_writing()
    finally:
        twin_file.unlink()
