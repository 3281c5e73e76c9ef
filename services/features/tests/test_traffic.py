"""SummarizeTraffic over gRPC: per device and per arm, counted in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import observation_pb2

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = observation_pb2.PredictionSource.PREDICTION_SOURCE_DEVICE
SERVER = observation_pb2.PredictionSource.PREDICTION_SOURCE_SERVER
UNSPECIFIED = observation_pb2.PredictionSource.PREDICTION_SOURCE_UNSPECIFIED


def _request(start: datetime, end: datetime | None = None, **fields) -> pb.SummarizeTrafficRequest:
    request = pb.SummarizeTrafficRequest(**fields)
    request.start_time.FromDatetime(start)
    if end is not None:
        request.end_time.FromDatetime(end)
    return request


@pytest.fixture
async def traffic(stub, make_observation, ingest_call, jpeg_of):
    """In [12:00, 12:01): car-1 sends 6 frames of deployment "p" (stable v3, the last two
    unlabelled; a challenger v4 shadows the first three), car-2 sends 2 of "p" answered by
    the challenger and 1 of deployment "q"; car-1's frame at 12:01 is outside."""
    tiny = jpeg_of(np.full((32, 32, 3), 128, np.uint8))

    def frame(i: int, second: int, **fields):
        return make_observation(i, jpeg=tiny, time=START + timedelta(seconds=second),
                                **{"deployment": "p", **fields})

    car1 = [frame(i, 5 * i, prediction_mm=500.0, sensor_mm=500.0 + i) for i in range(6)]
    for obs in car1[4:]:
        obs.ClearField("sensor_mm")
    for i, obs in enumerate(car1[:3]):
        obs.shadow_predictions.add(arm="challenger", model_name="distance", model_version="4",
                                   prediction_mm=obs.sensor_mm - 10.0 * (i + 1))
    car2 = [frame(10 + i, 40 + i, device_id="car-2", arm="challenger", model_version="4",
                  prediction_mm=300.0, sensor_mm=306.0) for i in range(2)]
    other = frame(20, 50, device_id="car-2", deployment="q", sensor_mm=100.0,
                  prediction_mm=90.0)
    outside = frame(30, 60, sensor_mm=0.0)
    reply = await ingest_call(stub, [*car1, *car2, other, outside])
    assert reply.stored == 10
    return car1, car2


async def test_devices_count_their_frames_newest_frame_and_error(stub, traffic):
    reply = await stub.SummarizeTraffic(_request(START, START + timedelta(minutes=1)),
                                        timeout=30)
    devices = {d.device_id: d for d in reply.devices}
    assert list(devices) == ["car-1", "car-2"]
    car1, car2 = devices["car-1"], devices["car-2"]
    assert (car1.frames, car1.labelled) == (6, 4)
    assert car1.mae_mm == pytest.approx((0 + 1 + 2 + 3) / 4)
    assert car1.last_frame.ToDatetime(tzinfo=UTC) == START + timedelta(seconds=25)
    assert (car2.frames, car2.labelled) == (3, 3)
    assert car2.mae_mm == pytest.approx((6 + 6 + 10) / 3)
    assert car2.last_frame.ToDatetime(tzinfo=UTC) == START + timedelta(seconds=50)


async def test_devices_say_what_answered_their_newest_frame(stub, make_observation,
                                                           ingest_call, jpeg_of):
    tiny = jpeg_of(np.full((32, 32, 3), 128, np.uint8))

    def frame(i: int, second: int, device_id: str, **fields):
        return make_observation(i, jpeg=tiny, time=START + timedelta(seconds=second),
                                device_id=device_id, deployment="p", **fields)

    unanswered = frame(4, 2, "car-4", model_version="4")
    unanswered.ClearField("prediction_mm")
    reply = await ingest_call(stub, [
        # car-3 was served v3, then ran v4's quantized twin itself: its newest frame says so
        frame(1, 1, "car-3", model_version="3", prediction_source=SERVER),
        frame(2, 2, "car-3", model_version="4", prediction_source=DEVICE, device_quantized=True),
        # car-4 ran v4's float file, then sent a frame without an answer
        frame(3, 1, "car-4", model_version="4", prediction_source=DEVICE),
        unanswered,
        # car-5's newest frame has car-3's capture time: told apart by device
        frame(5, 2, "car-5", model_version="3", prediction_source=SERVER),
        # car-6's newest is of another deployment
        frame(6, 1, "car-6", model_version="3", prediction_source=SERVER),
        make_observation(7, jpeg=tiny, time=START + timedelta(seconds=3), device_id="car-6",
                         deployment="q", model_version="9", prediction_source=DEVICE),
    ])
    assert reply.stored == 7
    window = _request(START, START + timedelta(minutes=1), deployments=["p"])
    devices = {d.device_id: d for d in (await stub.SummarizeTraffic(window, timeout=30)).devices}
    runs = {device: (d.model_version, d.source, d.quantized) for device, d in devices.items()}
    assert runs == {"car-3": ("4", DEVICE, True), "car-4": ("", UNSPECIFIED, False),
                    "car-5": ("3", SERVER, False), "car-6": ("3", SERVER, False)}
    everywhere = await stub.SummarizeTraffic(_request(START, START + timedelta(minutes=1)),
                                             timeout=30)
    car6 = next(d for d in everywhere.devices if d.device_id == "car-6")
    assert (car6.model_version, car6.source, car6.quantized) == ("9", DEVICE, False)


async def test_arms_count_answers_and_shadows_with_the_error_of_both(stub, traffic):
    reply = await stub.SummarizeTraffic(
        _request(START, START + timedelta(minutes=1), deployments=["p"]), timeout=30)
    arms = {(a.arm, a.model_version): a for a in reply.arms}
    assert list(arms) == [("challenger", "4"), ("stable", "3")]
    stable, challenger = arms[("stable", "3")], arms[("challenger", "4")]
    assert (stable.answered, stable.shadowed, stable.labelled) == (6, 0, 4)
    assert stable.mae_mm == pytest.approx(1.5)
    # Two answered at 6 mm, three shadowed at 10, 20 and 30 mm from their frames' sensor.
    assert (challenger.answered, challenger.shadowed, challenger.labelled) == (2, 3, 5)
    assert challenger.mae_mm == pytest.approx((6 + 6 + 10 + 20 + 30) / 5)
    assert [d.device_id for d in reply.devices] == ["car-1", "car-2"]
    assert {d.device_id: d.frames for d in reply.devices}["car-2"] == 2


async def test_a_window_without_frames_is_empty_and_unlabelled_frames_have_no_error(
        stub, traffic):
    empty = await stub.SummarizeTraffic(_request(START - timedelta(hours=1), START), timeout=30)
    assert not empty.devices and not empty.arms
    late = await stub.SummarizeTraffic(
        _request(START + timedelta(seconds=21), START + timedelta(seconds=30),
                 deployments=["p"]), timeout=30)
    (device,) = late.devices
    assert (device.device_id, device.frames, device.labelled) == ("car-1", 1, 0)
    assert not device.HasField("mae_mm")


async def test_the_window_is_checked(stub, traffic):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SummarizeTraffic(pb.SummarizeTrafficRequest(), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("start_time:")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SummarizeTraffic(_request(START, START), timeout=30)
    assert err.value.details().startswith("end_time:")
