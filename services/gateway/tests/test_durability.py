"""Nothing answered is lost: features outages, a full spool, and a gateway killed with -9.

Features is a contract double whose Ingest can be switched to UNAVAILABLE (a features
service that is down); the cross-service version with the real features service is in
``tests/test_data_plane.py``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
from grpc import aio

from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.testing import ServiceProcess, free_port

Reason = edge_pb2.FrameErrorReason
START_TIMEOUT_S = 300.0
"""Importing TensorFlow takes 10 s on an idle 2-core machine and minutes on a loaded one."""


async def test_features_down_mid_stream_then_back_every_observation_once(
        start_gateway, requests, jpegs) -> None:
    async with start_gateway() as gw:
        first = await gw.exchange("robot-1", "secret-1", [
            requests.hello("robot-1"), *(requests.frame(s, jpegs[s % 8], 900.0) for s in range(1, 51))])
        await gw.features.wait_for(50)
        gw.features.available = False
        down = await gw.exchange("robot-1", "secret-1", [
            requests.hello("robot-1", "session-2"),
            *(requests.frame(s, jpegs[s % 8], 900.0) for s in range(51, 251))])
        assert all(a.HasField("prediction") for a in down[1:]) and len(down) == 201
        await asyncio.sleep(0.5)
        assert len(gw.features.stored) == 50 and gw.app.spool.backlog_bytes > 0
        gw.features.available = True
        await gw.features.wait_for(250)
        answered = {a.prediction.observation_id for a in first[1:] + down[1:]}
        assert set(gw.features.stored) == answered
        assert sorted(o.seq for o in gw.features.stored.values()) == list(range(1, 251))
        await gw.wait_state(lambda: gw.app.spool.backlog_bytes == 0)


async def test_full_spool_refuses_frames_with_resource_exhausted_then_recovers(
        start_gateway, requests, jpegs) -> None:
    frame_bytes = len(jpegs[0]) + 1024
    async with start_gateway(spool_max_bytes=5 * frame_bytes) as gw:
        gw.features.available = False
        answers = await gw.exchange("robot-1", "secret-1", [
            requests.hello("robot-1"), *(requests.frame(s, jpegs[0]) for s in range(1, 21))])
        errors = [a.error for a in answers if a.HasField("error")]
        accepted = [a.prediction for a in answers if a.HasField("prediction")]
        assert 3 <= len(accepted) <= 5 and len(errors) == 20 - len(accepted)
        for error in errors:
            assert error.reason == Reason.FRAME_ERROR_REASON_SPOOL_FULL
            assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert "spool" in error.message
        gw.features.available = True
        await gw.features.wait_for(len(accepted))
        await gw.wait_state(lambda: gw.app.spool.backlog_bytes == 0)
        again = await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1", "s2"),
                                                           requests.frame(1, jpegs[0])])
        assert again[1].HasField("prediction")
        assert set(gw.features.stored) >= {p.observation_id for p in accepted}


async def test_gateway_killed_with_sigkill_replays_its_spool_after_restart(
        tmp_path: Path, start_gateway, requests, jpegs, model_repository) -> None:
    """The gateway as a real process, killed with -9 while features is down."""
    # start_gateway gives us the doubles; the in-process gateway it starts is not used.
    async with start_gateway() as doubles:
        doubles.features.available = False
        address = f"127.0.0.1:{free_port()}"
        env = {"EDGELOOP_LISTEN_ADDR": address, "EDGELOOP_REGISTRY_ADDR": doubles.app.settings.registry_addr,
               "EDGELOOP_REGISTRY_TOKEN": doubles.app.settings.registry_token,
               "EDGELOOP_FEATURES_ADDR": doubles.app.settings.features_addr,
               "EDGELOOP_MODEL_REPOSITORY": str(model_repository),
               "EDGELOOP_SPOOL_DIR": str(tmp_path / "crash-spool"), "EDGELOOP_LOG_FORMAT": "text",
               "EDGELOOP_FORWARD_INTERVAL_MS": "50", "TF_CPP_MIN_LOG_LEVEL": "2"}
        process = ServiceProcess("edgeloop.gateway", env, tmp_path / "gateway.log")
        try:
            await asyncio.to_thread(process.start, True, START_TIMEOUT_S)
            answers = await _stream_to(address, requests, jpegs, 60)
            assert [a.HasField("prediction") for a in answers[1:]] == [True] * 60
            await asyncio.sleep(1.0)  # group commit and fsync happen within milliseconds
            process.kill()
            assert len(doubles.features.stored) == 0
            assert any(p.stat().st_size > 0 for p in (tmp_path / "crash-spool").glob("*.seg"))
            doubles.features.available = True
            await asyncio.to_thread(process.start, True, START_TIMEOUT_S)
            await doubles.features.wait_for(60, timeout_s=30)
        finally:
            await asyncio.to_thread(process.stop)
        assert set(doubles.features.stored) == {a.prediction.observation_id for a in answers[1:]}
        assert os.path.exists(tmp_path / "crash-spool" / "ack")


async def _stream_to(address: str, requests, jpegs, count: int) -> list:
    async with aio.insecure_channel(address) as channel:
        call = gw_grpc.EdgeGatewayServiceStub(channel).Stream(
            metadata=(("authorization", "Bearer secret-1"), ("x-device-id", "robot-1")))
        await call.write(requests.hello("robot-1"))
        for seq in range(1, count + 1):
            await call.write(requests.frame(seq, jpegs[seq % 8], 700.0))
        await call.done_writing()
        return [answer async for answer in call]
