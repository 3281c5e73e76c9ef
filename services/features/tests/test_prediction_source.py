"""Device predictions (issue 14): recorded with their source, and treated like served ones.

The drift monitor's window, the trainer's snapshot query (labelled only, with images)
and lineage's per-version listing all read device-predicted rows exactly like served
rows; only ``prediction_source`` (and the optional server shadow) tells them apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.drift.window import fetch_recent

Source = observation_pb2.PredictionSource
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _list(stub, **fields) -> list[observation_pb2.Observation]:
    request = pb.ListObservationsRequest(**fields)
    return [o async for page in stub.ListObservations(request, timeout=60)
            for o in page.observations]


@pytest.fixture
async def mixed(stub, make_observation, ingest_call, jpeg_of):
    """Served (0), device + server shadow (1), device's quantized twin (2), pre-#14 served (3),
    unpredicted (4)."""
    tiny = jpeg_of(np.full((32, 32, 3), 128, np.uint8))
    observations = [make_observation(i, jpeg=tiny) for i in range(5)]
    observations[0].prediction_source = Source.PREDICTION_SOURCE_SERVER
    for device in observations[1:3]:
        device.prediction_source = Source.PREDICTION_SOURCE_DEVICE
    observations[1].server_shadow.CopyFrom(observation_pb2.ArmPrediction(
        arm="stable", model_name="distance", model_version="3", prediction_mm=501.25))
    observations[2].device_quantized = True
    observations[0].device_quantized = True  # a served frame: no device, no twin
    observations[4].ClearField("prediction_mm")
    reply = await ingest_call(stub, observations)
    assert reply.stored == 5
    return observations


async def test_source_and_server_shadow_come_back_as_sent(stub, mixed) -> None:
    listed = {o.observation_id: o for o in await _list(stub)}
    got = [listed[o.observation_id] for o in mixed]
    assert [o.prediction_source for o in got] == [
        Source.PREDICTION_SOURCE_SERVER, Source.PREDICTION_SOURCE_DEVICE,
        Source.PREDICTION_SOURCE_DEVICE, Source.PREDICTION_SOURCE_SERVER,  # unspecified = served
        Source.PREDICTION_SOURCE_UNSPECIFIED]  # no prediction, no source
    shadow = got[1].server_shadow
    assert (shadow.model_version, shadow.prediction_mm) == ("3", pytest.approx(501.25))
    assert not got[2].HasField("server_shadow") and not got[0].HasField("server_shadow")
    assert got[1].error_mm == pytest.approx(mixed[1].prediction_mm - mixed[1].sensor_mm)
    assert [o.device_quantized for o in got] == [False, False, True, False, False]


async def test_snapshot_and_lineage_queries_include_device_predictions(stub, mixed) -> None:
    # The trainer's snapshot: labelled frames with images, whatever predicted them.
    snapshot = await _list(stub, deployments=["parking"], labelled_only=True, include_jpeg=True)
    assert {o.observation_id for o in snapshot} == {o.observation_id for o in mixed}
    # Lineage: the predictions a version made, served or on the device.
    by_version = await _list(stub, model_name="distance", model_version="3")
    assert {o.observation_id for o in by_version} >= {o.observation_id for o in mixed[:3]}


async def test_drift_window_counts_device_predictions_like_served_ones(app, mixed) -> None:
    recent = await fetch_recent(app.pool, "parking", BASE - timedelta(minutes=1),
                                BASE + timedelta(minutes=1))
    window = recent.window(BASE - timedelta(minutes=1), "3")
    served_or_device = window.columns["prediction_mm"]
    predictions = sorted(served_or_device[~np.isnan(served_or_device)])
    assert predictions == pytest.approx([o.prediction_mm for o in mixed[:4]])
    errors = window.columns["abs_error_mm"][~np.isnan(window.columns["abs_error_mm"])]
    assert len(errors) == 4


async def test_bad_source_or_shadow_is_refused_naming_the_field(stub, make_observation,
                                                                 ingest_call) -> None:
    unknown = make_observation(0)
    unknown.prediction_source = 7
    bad_shadow = make_observation(1)
    bad_shadow.server_shadow.prediction_mm = float("nan")
    for obs, field in ((unknown, "prediction_source"), (bad_shadow, "server_shadow.prediction_mm")):
        try:
            reply = await ingest_call(stub, [obs])
        except grpc.aio.AioRpcError as exc:
            assert field in exc.details()
            continue
        assert reply.stored == 0 and field in str(reply)
