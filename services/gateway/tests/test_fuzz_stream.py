"""Fuzzing the Stream RPC (Hypothesis): arbitrary Hello and Frame fields and JPEG bytes.

A real gateway (in-process, real embedded model host, registry and features contract
doubles as in the other component tests) gets streams of generated messages on loopback.
Properties: every stream ends within its deadline; a stream that is refused ends with a
documented status whose message names the field (INVALID_ARGUMENT ``hello.device_id``,
FAILED_PRECONDITION for frames before Hello); once opened, every frame gets exactly one
answer — a Prediction or a FrameError naming its field — and the stream goes on; the
server answers health SERVING after every example.

Examples are derandomized (the same ones in every run) and few, to keep the suite fast.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import cv2
import grpc
import numpy as np
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

DEVICE, TOKEN = "robot-1", "secret-1"
STREAM_DEADLINE_S = 120.0
"""Generous: a loaded machine is slow, a hung stream is still caught."""
FUZZ = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _jpeg(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    assert ok
    return data.tobytes()


VALID = [_jpeg(64, 48), _jpeg(32, 24, 1)]
TINY = _jpeg(8, 8)
HUGE_SIDE = cv2.imencode(".jpg", np.zeros((16, 4100, 3), np.uint8))[1].tobytes()

jpeg_bytes = st.one_of(
    st.sampled_from([*VALID, TINY, HUGE_SIDE, b""]),
    st.binary(max_size=256),
    st.builds(lambda body: b"\xff\xd8\xff" + body + b"\xff\xd9", st.binary(max_size=256)),
    st.builds(lambda j, cut: j[:cut], st.sampled_from(VALID), st.integers(0, 4000)),
    st.builds(lambda j, at, b: j[:at] + bytes([b]) + j[at + 1:], st.sampled_from(VALID),
              st.integers(0, 2000), st.integers(0, 255)),
)
timestamps = st.one_of(
    st.none(),
    st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.integers(0, 2**34), st.integers(0, 999_999_999)),
)


@st.composite
def frames(draw: Any) -> gw_pb2.StreamRequest:
    frame = edge_pb2.Frame(
        seq=draw(st.one_of(st.integers(0, 20), st.integers(0, 2**64 - 1))),
        jpeg=draw(jpeg_bytes),
        traceparent=draw(st.one_of(st.just(""), st.text(max_size=80),
                                   st.just("00-" + "a" * 32 + "-" + "b" * 16 + "-01"))),
        late=draw(st.booleans()),
    )
    sensor = draw(st.one_of(st.none(), st.floats(width=32)))
    if sensor is not None:
        frame.sensor_mm = sensor
    stamp = draw(timestamps)
    if stamp is not None:
        frame.captured_at.seconds, frame.captured_at.nanos = stamp
    return gw_pb2.StreamRequest(frame=frame)


hellos = st.builds(
    lambda device, session, version, caps: gw_pb2.StreamRequest(hello=edge_pb2.Hello(
        device_id=device, session_id=session, client_version=version, capabilities=caps)),
    st.one_of(st.just(DEVICE), st.text(max_size=20)),
    st.text(max_size=40), st.text(max_size=20), st.lists(st.text(max_size=10), max_size=3),
)
streams = st.tuples(
    st.one_of(hellos, frames(), st.just(gw_pb2.StreamRequest())),
    st.lists(st.one_of(frames(), hellos), max_size=4),
)


def _field_named(message: str) -> bool:
    """A refusal's message starts with the field it is about (``frame.jpeg: ...``)."""
    return message.split(":", 1)[0] in {"frame.seq", "frame.jpeg", "frame.sensor_mm",
                                        "frame.captured_at", "frame.traceparent"}


def _valid(frame: edge_pb2.Frame, last_seq: int | None) -> bool:
    """Whether the gateway must predict ``frame`` (a valid JPEG and envelope, seq increasing)."""
    stamp_ok = not frame.HasField("captured_at") or (
        -62_135_596_800 <= frame.captured_at.seconds <= 253_402_300_799
        and 0 <= frame.captured_at.nanos <= 999_999_999)
    sensor_ok = not frame.HasField("sensor_mm") or (
        math.isfinite(frame.sensor_mm) and frame.sensor_mm >= 0)
    return (frame.jpeg in VALID and stamp_ok and sensor_ok
            and (last_seq is None or frame.seq > last_seq))


def check_stream(address: str, first: gw_pb2.StreamRequest,
                 rest: list[gw_pb2.StreamRequest]) -> None:
    """Run one generated stream and check the properties of the module docstring."""
    with grpc.insecure_channel(address) as channel:
        call = gw_grpc.EdgeGatewayServiceStub(channel).Stream(
            iter([first, *rest]), timeout=STREAM_DEADLINE_S,
            metadata=(("authorization", f"Bearer {TOKEN}"), ("x-device-id", DEVICE)))
        answers: list[gw_pb2.StreamResponse] = []
        try:
            answers.extend(call)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if first.WhichOneof("kind") != "hello":
                assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, details)
                assert "Hello" in details
            else:
                assert first.hello.device_id != DEVICE, (code, details)
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
                assert details.startswith("hello.device_id:"), details
            assert not answers
            return
        finally:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert first.WhichOneof("kind") == "hello" and first.hello.device_id == DEVICE
    assert answers[0].HasField("welcome"), answers[0]
    sent = [m.frame for m in rest if m.WhichOneof("kind") == "frame"]
    assert len(answers) == 1 + len(sent), "every frame gets exactly one answer"
    assert sorted(a.prediction.seq if a.HasField("prediction") else a.error.seq
                  for a in answers[1:]) == sorted(f.seq for f in sent)
    expected, last_seq = {}, None
    for frame in sent:
        expected.setdefault(frame.seq, []).append(_valid(frame, last_seq))
        if last_seq is None or frame.seq > last_seq:
            last_seq = frame.seq  # a refused frame's number is used up too
    for seq, valid in expected.items():
        predicted = [a for a in answers[1:] if a.HasField("prediction")
                     and a.prediction.seq == seq]
        assert len(predicted) == sum(valid), (seq, valid, answers)
    for answer in answers[1:]:
        if answer.HasField("prediction"):
            assert math.isfinite(answer.prediction.distance_mm)
            continue
        error = answer.error
        assert error.reason != edge_pb2.FRAME_ERROR_REASON_UNSPECIFIED, error
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], error
        assert _field_named(error.message), error.message


async def test_arbitrary_streams_end_with_an_answer_per_frame(start_gateway) -> None:
    @FUZZ
    @given(streams)
    @example((gw_pb2.StreamRequest(hello=edge_pb2.Hello(device_id=DEVICE)),
              [gw_pb2.StreamRequest(frame=edge_pb2.Frame(seq=1, jpeg=VALID[0], sensor_mm=-1.0)),
               gw_pb2.StreamRequest(frame=edge_pb2.Frame(seq=2, jpeg=VALID[0],
                                                         sensor_mm=float("nan"))),
               gw_pb2.StreamRequest(frame=edge_pb2.Frame(seq=2, jpeg=VALID[1])),
               gw_pb2.StreamRequest(frame=edge_pb2.Frame(seq=3, jpeg=b"\xff\xd8\xff\xd9"))]))
    # Found by this test: a captured_at out of the Timestamp range ended the whole stream
    # with INTERNAL (the observation id conversion raised); now it is a FrameError.
    @example((gw_pb2.StreamRequest(hello=edge_pb2.Hello(device_id=DEVICE)),
              [gw_pb2.StreamRequest(frame=edge_pb2.Frame(
                  seq=1, jpeg=VALID[0], captured_at={"seconds": 0, "nanos": -1})),
               gw_pb2.StreamRequest(frame=edge_pb2.Frame(
                  seq=2, jpeg=VALID[0], captured_at={"seconds": 2**62})),
               gw_pb2.StreamRequest(frame=edge_pb2.Frame(seq=3, jpeg=VALID[0]))]))
    def fuzz(case: tuple[gw_pb2.StreamRequest, list[gw_pb2.StreamRequest]]) -> None:
        check_stream(gw.address, *case)

    async with start_gateway() as gw:
        # Hypothesis drives blocking clients from a worker thread; the gateway serves on
        # this event loop meanwhile.
        await asyncio.to_thread(fuzz)
