"""The Stream RPC end to end inside the gateway: auth, Hello, frames, answers, recording.

Registry and features are contract doubles (see conftest.py); models are real SavedModels
run by the real embedded host.
"""

from __future__ import annotations

import math
import re
import uuid

import grpc
import pytest
from edgeloop.contracts.edge.v1 import edge_pb2
from grpc import aio

Reason = edge_pb2.FrameErrorReason


async def test_frames_are_answered_by_the_deployed_version_and_recorded(
    start_gateway, requests, jpegs, answer_version
) -> None:
    async with start_gateway() as gw:
        sent = [requests.frame(seq, jpegs[seq % 8], sensor_mm=500.0 + seq) for seq in range(1, 21)]
        answers = await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1"), *sent])

        welcome = answers[0].welcome
        assert (welcome.deployment, welcome.model_name, welcome.gateway_id) == (
            "parking",
            "distance",
            "gw-test",
        )
        assert welcome.max_frame_bytes == 2 * 1024 * 1024
        predictions = [a.prediction for a in answers[1:]]
        assert sorted(p.seq for p in predictions) == list(range(1, 21))
        for p in predictions:
            assert p.HasField("distance_mm") and answer_version(p.distance_mm) == "1"
            assert (p.model_name, p.model_version, p.deployment, p.arm) == (
                "distance",
                "1",
                "parking",
                "stable",
            )
            assert re.fullmatch(r"[0-9a-f]{32}", p.trace_id) and p.trace_id != "0" * 32
            assert uuid.UUID(p.observation_id).version == 7
            assert p.server_latency_ms > 0

        await gw.features.wait_for(20)
        by_seq = {o.seq: o for o in gw.features.stored.values()}
        for p in predictions:
            obs = by_seq[p.seq]
            assert obs.observation_id == p.observation_id and obs.trace_id == p.trace_id
            assert (obs.device_id, obs.session_id, obs.deployment, obs.data_group) == (
                "robot-1",
                "session-1",
                "parking",
                "group-1",
            )
            assert (obs.model_name, obs.model_version, obs.arm) == ("distance", "1", "stable")
            assert obs.jpeg == jpegs[p.seq % 8]
            assert obs.sensor_mm == pytest.approx(500.0 + p.seq)
            assert obs.prediction_mm == pytest.approx(p.distance_mm)
            assert obs.error_mm == pytest.approx(p.distance_mm - (500.0 + p.seq), abs=1e-3)
            assert obs.traceparent.startswith(f"00-{p.trace_id}-")
            assert obs.HasField("time") and obs.HasField("received_at")


async def test_frame_span_continues_the_device_trace(start_gateway, requests, jpegs) -> None:
    device_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{device_trace}-00f067aa0ba902b7-01"
    async with start_gateway() as gw:
        answers = await gw.exchange(
            "robot-1",
            "secret-1",
            [
                requests.hello("robot-1"),
                requests.frame(1, jpegs[0], traceparent=parent),
                requests.frame(2, jpegs[1], traceparent="garbage"),
            ],
        )
        traced, fresh = sorted((a.prediction for a in answers[1:]), key=lambda p: p.seq)
        assert traced.trace_id == device_trace
        assert fresh.trace_id != device_trace and len(fresh.trace_id) == 32


def test_each_untraced_frame_starts_its_own_trace_linked_to_the_stream() -> None:
    """Under the gRPC server span, untraced frames are still separate traces (with a link)."""
    from edgeloop.gateway.tracing import frame_tracer, start_frame_span, trace_ids
    from opentelemetry.sdk.trace import TracerProvider

    with TracerProvider().get_tracer("test").start_as_current_span("rpc") as rpc:
        spans = [start_frame_span(frame_tracer(), "", "robot-1", seq) for seq in (1, 2)]
    ids = [trace_ids(span)[0] for span in spans]
    assert len(set(ids)) == 2 and format(rpc.get_span_context().trace_id, "032x") not in ids
    assert all(span.links[0].context == rpc.get_span_context() for span in spans)
    child = start_frame_span(frame_tracer(), f"00-{'ab' * 16}-{'cd' * 8}-01", "robot-1", 3)
    assert trace_ids(child)[0] == "ab" * 16
    assert trace_ids(child)[1].startswith(f"00-{'ab' * 16}-")


async def test_bad_frames_get_frame_errors_and_the_stream_goes_on(
    start_gateway, requests, jpegs
) -> None:
    async with start_gateway(max_frame_bytes=64 * 1024) as gw:
        bad = [
            requests.frame(1, b"\xff\xd8\xff" + b"\x00garbage" * 100),  # corrupt JPEG
            requests.frame(2, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),  # not a JPEG
            requests.frame(3, jpegs[0][:1] + b"\xff" * (64 * 1024 + 1)),  # too large
            requests.frame(4, jpegs[0], sensor_mm=math.nan),  # NaN sensor
            requests.frame(5, jpegs[0], sensor_mm=-3.0),  # negative sensor
            requests.frame(6, jpegs[1]),  # good
            requests.frame(6, jpegs[2]),  # repeated seq
            requests.frame(7, b""),  # empty
            requests.frame(9, jpegs[3], sensor_mm=math.inf),  # infinite sensor
            requests.frame(10, jpegs[4]),  # good
            requests.frame(11, jpegs[5][: len(jpegs[5]) // 2]),  # truncated
            requests.frame(12, b"\xff\xd8\xff" + b"\x01junk" * 50 + b"\xff\xd9"),  # undecodable
        ]
        answers = await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1"), *bad])
        errors = {(a.error.seq, a.error.reason): a.error for a in answers if a.HasField("error")}
        expected = {
            (1, Reason.FRAME_ERROR_REASON_INVALID_JPEG),
            (2, Reason.FRAME_ERROR_REASON_INVALID_JPEG),
            (3, Reason.FRAME_ERROR_REASON_TOO_LARGE),
            (4, Reason.FRAME_ERROR_REASON_INVALID_SENSOR),
            (5, Reason.FRAME_ERROR_REASON_INVALID_SENSOR),
            (6, Reason.FRAME_ERROR_REASON_OUT_OF_ORDER),
            (7, Reason.FRAME_ERROR_REASON_INVALID_JPEG),
            (9, Reason.FRAME_ERROR_REASON_INVALID_SENSOR),
            (11, Reason.FRAME_ERROR_REASON_INVALID_JPEG),
            (12, Reason.FRAME_ERROR_REASON_INVALID_JPEG),
        }
        assert set(errors) == expected
        for error in errors.values():
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "frame." in error.message  # names the field
        assert "sensor_mm" in errors[(4, Reason.FRAME_ERROR_REASON_INVALID_SENSOR)].message
        assert "truncated" in errors[(11, Reason.FRAME_ERROR_REASON_INVALID_JPEG)].message
        assert "decode" in errors[(12, Reason.FRAME_ERROR_REASON_INVALID_JPEG)].message
        assert sorted(a.prediction.seq for a in answers if a.HasField("prediction")) == [6, 10]
        await gw.features.wait_for(2)
        assert sorted(o.seq for o in gw.features.stored.values()) == [6, 10]


async def test_tiny_image_is_refused_for_its_dimensions(start_gateway, requests) -> None:
    import cv2
    import numpy as np

    ok, tiny = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    async with start_gateway() as gw:
        answers = await gw.exchange(
            "robot-1", "secret-1", [requests.hello("robot-1"), requests.frame(1, tiny.tobytes())]
        )
        assert answers[1].error.reason == Reason.FRAME_ERROR_REASON_BAD_DIMENSIONS
        assert "8x8" in answers[1].error.message


@pytest.mark.parametrize(
    ("device", "token"), [("robot-1", "wrong"), ("stranger", "secret-1"), ("robot-1", "")]
)
async def test_unknown_device_or_wrong_token_ends_the_stream(
    start_gateway, requests, device, token
) -> None:
    async with start_gateway() as gw:
        with pytest.raises(aio.AioRpcError) as failure:
            await gw.exchange(device, token, [requests.hello(device)])
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert gw.features.stored == {}


async def test_missing_device_id_metadata_is_unauthenticated(start_gateway) -> None:
    async with start_gateway() as gw:
        call = gw.stub.Stream(metadata=(("authorization", "Bearer secret-1"),))
        with pytest.raises(aio.AioRpcError) as failure:
            # The metadata alone is refused, before any Hello is read. No Hello is written:
            # a write racing the refusal fails in grpc.aio as INTERNAL ("Failed
            # execute_batch"), the server's status lost (a CI run of 2026-12-05).
            await call.read()
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "x-device-id" in failure.value.details()


async def test_frames_before_hello_fail_the_stream(start_gateway, requests, jpegs) -> None:
    async with start_gateway() as gw:
        with pytest.raises(aio.AioRpcError) as failure:
            await gw.exchange("robot-1", "secret-1", [requests.frame(1, jpegs[0])])
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Hello" in failure.value.details()


async def test_hello_for_another_device_is_refused(start_gateway, requests) -> None:
    async with start_gateway() as gw:
        with pytest.raises(aio.AioRpcError) as failure:
            await gw.exchange("robot-1", "secret-1", [requests.hello("robot-2")])
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "hello.device_id" in failure.value.details()


async def test_deployment_without_model_answers_without_distance_and_records(
    start_gateway, requests, jpegs
) -> None:
    from edgeloop.contracts.registry.v1 import deployment_pb2

    async with start_gateway() as gw:
        gw.registry.put_deployment(
            deployment_pb2.Deployment(name="collect", active=True, data_group="first-drive")
        )
        gw.registry.assign("robot-2", "secret-2", "collect")
        await gw.wait_state(lambda: gw.app.state.deployment_of("robot-2") == "collect")
        answers = await gw.exchange(
            "robot-2",
            "secret-2",
            [requests.hello("robot-2"), requests.frame(1, jpegs[0], sensor_mm=800.0)],
        )
        assert answers[0].welcome.deployment == "collect" and answers[0].welcome.model_name == ""
        prediction = answers[1].prediction
        assert not prediction.HasField("distance_mm")
        assert (prediction.arm, prediction.model_version, prediction.deployment) == (
            "none",
            "",
            "collect",
        )
        await gw.features.wait_for(1)
        (obs,) = gw.features.stored.values()
        assert (obs.deployment, obs.data_group, obs.arm) == ("collect", "first-drive", "none")
        assert not obs.HasField("prediction_mm") and not obs.HasField("error_mm")
        assert obs.sensor_mm == 800.0 and obs.jpeg == jpegs[0]
