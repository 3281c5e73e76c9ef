"""ListObservations over gRPC: filters, order, paging, images, shadow answers."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.images import locate

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _list(stub, **fields) -> list[list[observation_pb2.Observation]]:
    request = pb.ListObservationsRequest(**fields)
    return [list(page.observations) async for page in stub.ListObservations(request, timeout=60)]


def _ids(pages) -> list[str]:
    return [obs.observation_id for page in pages for obs in page]


@pytest.fixture
async def dataset(stub, make_observation, ingest_call, jpeg_of):
    """Twelve observations: deployments a/b, groups g1/g2, devices car-1/car-2, every
    third unlabelled, one second apart, in a shuffled order."""
    tiny = jpeg_of(np.full((32, 32, 3), 128, np.uint8))
    observations = []
    for i in range(12):
        obs = make_observation(i, jpeg=tiny, deployment="a" if i % 2 == 0 else "b",
                               data_group="g1" if i < 6 else "g2",
                               device_id="car-1" if i % 4 < 2 else "car-2")
        if i >= 8:
            obs.model_version = "4"  # make_observation answers with distance@3
        if i % 3 == 0:
            obs.ClearField("sensor_mm")
        obs.late = i == 1
        observations.append(obs)
    shuffled = observations[::-1]
    reply = await ingest_call(stub, shuffled[:7], shuffled[7:])
    assert reply.stored == 12
    return observations


async def test_everything_in_time_order(stub, dataset):
    assert _ids(await _list(stub)) == [o.observation_id for o in dataset]


@pytest.mark.parametrize("fields, expected", [
    (dict(deployments=["a"]), [0, 2, 4, 6, 8, 10]),
    (dict(deployments=["a", "b"], data_groups=["g2"]), [6, 7, 8, 9, 10, 11]),
    (dict(device_id="car-2"), [2, 3, 6, 7, 10, 11]),
    (dict(labelled_only=True, deployments=["b"]), [1, 5, 7, 11]),
    (dict(limit=3), [0, 1, 2]),
    (dict(limit=3, newest_first=True), [11, 10, 9]),
    (dict(newest_first=True, deployments=["a"]), [10, 8, 6, 4, 2, 0]),
    (dict(limit=4, spread=True), [0, 3, 6, 9]),
    (dict(limit=5, spread=True), [0, 3, 6, 9]),
    (dict(limit=6, spread=True), [0, 2, 4, 6, 8, 10]),
    (dict(limit=3, spread=True, deployments=["b"]), [1, 5, 9]),
    (dict(limit=2, spread=True, newest_first=True), [6, 0]),
    (dict(limit=20, spread=True, device_id="car-1"), [0, 1, 4, 5, 8, 9]),
    (dict(model_name="distance", model_version="4"), [8, 9, 10, 11]),
    (dict(model_name="other"), []),
])
async def test_filters(stub, dataset, fields, expected):
    assert _ids(await _list(stub, **fields)) == [dataset[i].observation_id for i in expected]


async def test_model_version_needs_model_name(stub, dataset):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _list(stub, model_version="2")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("model_version:")


async def test_time_range_is_start_inclusive_end_exclusive(stub, dataset):
    request = pb.ListObservationsRequest()
    request.start_time.FromDatetime(BASE + timedelta(seconds=3))
    request.end_time.FromDatetime(BASE + timedelta(seconds=6))
    pages = [list(p.observations) async for p in stub.ListObservations(request, timeout=30)]
    assert _ids(pages) == [dataset[i].observation_id for i in (3, 4, 5)]


async def test_by_observation_ids(stub, dataset):
    wanted = [dataset[5].observation_id.upper(), dataset[1].observation_id]
    assert _ids(await _list(stub, observation_ids=wanted)) == \
        [dataset[1].observation_id, dataset[5].observation_id]


async def test_rows_come_back_as_stored(stub, dataset):
    (first,), = await _list(stub, observation_ids=[dataset[1].observation_id])
    sent = dataset[1]
    assert first.time == sent.time and first.received_at == sent.received_at
    assert (first.device_id, first.deployment, first.data_group, first.session_id, first.seq) == \
        (sent.device_id, sent.deployment, sent.data_group, sent.session_id, sent.seq)
    assert (first.model_name, first.model_version, first.arm) == ("distance", "3", "stable")
    assert (first.prediction_mm, first.sensor_mm) == (sent.prediction_mm, sent.sensor_mm)
    assert first.error_mm == pytest.approx(sent.prediction_mm - sent.sensor_mm)
    assert (first.trace_id, first.traceparent) == (sent.trace_id, sent.traceparent)
    assert first.late and first.HasField("received_at")
    assert re.fullmatch(r"features/b/2026-03-01/[0-9a-f]{32}\.tar#\d+\+\d+", first.image_key)
    assert first.jpeg == b""  # only when asked for
    assert first.stats.brightness == pytest.approx(128 / 255 * 100, abs=1)


async def test_include_jpeg_reads_the_object_store(stub, dataset):
    pages = await _list(stub, include_jpeg=True, deployments=["a"])
    listed = [obs for page in pages for obs in page]
    assert [o.jpeg for o in listed] == [dataset[i].jpeg for i in (0, 2, 4, 6, 8, 10)]


async def test_shadow_predictions_are_listed(stub, make_observation, ingest_call):
    obs = make_observation(0)
    obs.shadow_predictions.add(arm="challenger", model_name="distance", model_version="9",
                               prediction_mm=42.0)
    await ingest_call(stub, [obs])
    (listed,), = await _list(stub)
    assert [(s.arm, s.model_version, s.prediction_mm) for s in listed.shadow_predictions] == \
        [("challenger", "9", 42.0)]


async def test_large_results_stream_in_pages(stub, make_observation, ingest_call, jpeg_of):
    tiny = jpeg_of(np.zeros((16, 16, 3), np.uint8))
    batch = [make_observation(i, jpeg=tiny, seq=i) for i in range(1100)]
    reply = await ingest_call(stub, batch[:550], batch[550:])
    assert reply.stored == 1100
    pages = await _list(stub)
    assert [len(p) for p in pages] == [500, 500, 100]
    assert [o.seq for p in pages for o in p] == list(range(1100))


@pytest.mark.parametrize("fields, field", [
    (dict(observation_ids=[str(uuid.uuid4()), "nope"]), "observation_ids[1]"),
])
async def test_bad_filters_name_the_field(stub, features, fields, field):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _list(stub, **fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field)


async def test_end_before_start_is_invalid(stub, features):
    request = pb.ListObservationsRequest()
    request.start_time.FromDatetime(BASE)
    request.end_time.FromDatetime(BASE - timedelta(seconds=1))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        [p async for p in stub.ListObservations(request, timeout=10)]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("end_time")


async def test_missing_image_leaves_jpeg_empty_and_keeps_the_row(stub, app, dataset, tmp_path):
    keys = {o.observation_id: o.image_key
            for page in await _list(stub, deployments=["a"]) for o in page}
    lost_pack = locate(keys[dataset[2].observation_id]).object_key
    (tmp_path / "objects" / lost_pack).unlink()
    pages = await _list(stub, include_jpeg=True, deployments=["a"])
    listed = {obs.observation_id: obs for page in pages for obs in page}
    assert len(listed) == 6
    lost = {i for i, key in keys.items() if locate(key).object_key == lost_pack}
    assert dataset[2].observation_id in lost and len(lost) < 6
    assert {i: o.jpeg for i, o in listed.items()} == {
        o.observation_id: b"" if o.observation_id in lost else o.jpeg
        for o in dataset if o.deployment == "a"}


async def test_an_image_stored_whole_before_packs_is_still_read(stub, app, dataset):
    """Rows written before images were packed name an object per image: still readable."""
    legacy = dataset[4]
    key = f"features/a/2026-03-01/{legacy.observation_id}.jpg"
    app.store.put(key, legacy.jpeg)
    async with app.pool.connection() as conn:
        await conn.execute("UPDATE features.observations SET image_key = %s "
                           "WHERE observation_id = %s", (key, legacy.observation_id))
    (listed,), = await _list(stub, include_jpeg=True, observation_ids=[legacy.observation_id])
    assert (listed.image_key, listed.jpeg) == (key, legacy.jpeg)
