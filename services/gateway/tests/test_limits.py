"""Per-device limits: open streams and frame rate (unit, then through the real Stream RPC)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.gateway.limits import DeviceLimits
from edgeloop.platform.errors import ResourceExhausted
from edgeloop.testing import ManualClock
from grpc import aio

Reason = edge_pb2.FrameErrorReason


def test_stream_slots_are_counted_per_device_and_given_back() -> None:
    limits = DeviceLimits(max_streams=2, max_fps=0)
    with limits.stream("a"), limits.stream("a"):
        with pytest.raises(ResourceExhausted, match="'a' already has 2 open streams"), \
                limits.stream("a"):
            pass
        with limits.stream("b"):  # another device is not affected
            assert limits.open_streams("b") == 1
    assert limits.open_streams("a") == 0
    with limits.stream("a"):
        assert limits.open_streams("a") == 1


def test_token_bucket_allows_a_second_of_burst_then_the_rate() -> None:
    clock = ManualClock(100.0)
    limits = DeviceLimits(max_streams=0, max_fps=10, clock=clock)
    assert [limits.try_take("a") for _ in range(11)] == [True] * 10 + [False]
    assert limits.try_take("b")  # per device
    clock.now += 0.25  # 2.5 tokens come back
    assert [limits.try_take("a") for _ in range(3)] == [True, True, False]
    clock.now += 60  # never more than the burst
    assert sum(limits.try_take("a") for _ in range(20)) == 10


async def test_late_frames_wait_for_their_turn_instead_of_being_refused() -> None:
    limits = DeviceLimits(max_streams=0, max_fps=200)
    for _ in range(200):
        assert limits.try_take("a")
    assert not limits.try_take("a")
    await asyncio.wait_for(limits.take("a"), 5)  # paced: ~5 ms for the next token


async def test_a_third_stream_of_one_device_is_refused(start_gateway, requests, jpegs) -> None:
    async with start_gateway(max_streams_per_device=2) as gw:
        calls = [gw.open("robot-1", "secret-1") for _ in range(2)]
        for call in calls:
            await call.write(requests.hello("robot-1"))
            assert (await call.read()).HasField("welcome")
        with pytest.raises(aio.AioRpcError) as refused:
            await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1")])
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "EDGELOOP_MAX_STREAMS_PER_DEVICE" in refused.value.details()
        for call in calls:
            call.cancel()
        await gw.wait_state(lambda: gw.app.service.limits.open_streams("robot-1") == 0)
        answers = await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1"),
                                                             requests.frame(1, jpegs[0])])
        assert answers[1].HasField("prediction")


async def test_live_frames_over_the_rate_are_refused_and_not_recorded(
        start_gateway, requests, jpegs) -> None:
    # 0.2 frames/s: a burst of one frame, then one every 5 s. Sending 30 frames takes far
    # less than the minute it would need for them all to pass, even on a slow machine.
    async with start_gateway(max_fps_per_device=0.2) as gw:
        live = [requests.frame(seq, jpegs[seq % 8], sensor_mm=500.0) for seq in range(1, 31)]
        answers = await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1"), *live])
        errors = [a.error for a in answers[1:] if a.HasField("error")]
        answered = [a.prediction for a in answers[1:] if a.HasField("prediction")]
        assert len(errors) + len(answered) == 30
        assert 1 <= len(answered) <= 12 and errors
        assert {e.reason for e in errors} == {Reason.FRAME_ERROR_REASON_RATE_LIMITED}
        assert all(e.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] for e in errors)
        assert "EDGELOOP_MAX_FPS_PER_DEVICE" in errors[0].message
        await gw.features.wait_for(len(answered))
        assert len(gw.features.stored) == len(answered)  # refused frames are not recorded


async def test_late_frames_over_the_rate_are_paced_and_all_answered(
        start_gateway, requests, jpegs) -> None:
    async with start_gateway(max_fps_per_device=20) as gw:
        late = [requests.frame(seq, jpegs[seq % 8], sensor_mm=500.0, late=True)
                for seq in range(1, 41)]  # a burst of 20, then 20 more at 20/s
        answers = await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1"), *late],
                                    timeout_s=120)
        assert [a.HasField("prediction") for a in answers[1:]] == [True] * 40
        await gw.features.wait_for(40)


def test_frame_limit_must_fit_in_the_request_limit(monkeypatch, tmp_path) -> None:
    from edgeloop.gateway.settings import Settings
    from edgeloop.platform.config import load_settings
    from edgeloop.platform.errors import ConfigError

    for name, value in {"REGISTRY_ADDR": "r:1", "REGISTRY_TOKEN": "t", "FEATURES_ADDR": "f:1",
                        "MODEL_REPOSITORY": str(tmp_path), "SPOOL_DIR": str(tmp_path / "s"),
                        "MAX_FRAME_BYTES": str(8 * 2**20),
                        "MAX_REQUEST_BYTES": str(4 * 2**20)}.items():
        monkeypatch.setenv(f"EDGELOOP_{name}", value)
    with pytest.raises(ConfigError, match="EDGELOOP_MAX_FRAME_BYTES"):
        load_settings(Settings)
    monkeypatch.setenv("EDGELOOP_MAX_REQUEST_BYTES", str(9 * 2**20))
    assert load_settings(Settings).max_request_bytes == 9 * 2**20


async def test_a_message_over_the_request_limit_ends_the_stream_clearly(
        start_gateway, requests) -> None:
    async with start_gateway(max_request_bytes=256 * 1024, max_frame_bytes=128 * 1024) as gw:
        with pytest.raises(aio.AioRpcError) as refused:
            await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1"),
                                                      requests.frame(1, b"\xff" * 300_000)])
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # ... and the gateway still answers the next stream.
        answers = await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1")])
        assert answers[0].HasField("welcome")
