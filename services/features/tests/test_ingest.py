"""Ingest over gRPC into real PostgreSQL and a local-folder object store."""

from __future__ import annotations

import io
import re
import tarfile
import uuid

import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.images import locate, read_image

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()


async def _rows(app, sql: str, *params):
    async with app.pool.connection() as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def test_batch_is_stored_with_context_stats_and_image(stub, app, make_observation,
                                                            ingest_call):
    shadow = observation_pb2.ArmPrediction(arm="shadow", model_name="distance", model_version="4",
                                           prediction_mm=510.0)
    batch = [make_observation(i) for i in range(5)]
    batch[0].shadow_predictions.append(shadow)
    reply = await ingest_call(stub, batch)
    assert (reply.stored, reply.duplicates, list(reply.rejected)) == (5, 0, [])

    rows = await _rows(app, "SELECT observation_id::text, device_id, deployment, model_version, "
                            "sensor_mm, error_mm, image_key, saturation, keypoints, width, "
                            "trace_id "
                            "FROM features.observations ORDER BY time")
    assert [r[0] for r in rows] == [o.observation_id for o in batch]
    first = rows[0]
    assert first[1:5] == ("car-1", "parking", "3", 490.0)
    assert first[5] == pytest.approx(10.0)  # derived: prediction - sensor
    assert re.fullmatch(r"features/parking/2026-03-01/[0-9a-f]{32}\.tar#\d+\+\d+", first[6])
    assert 0 < first[7] < 100 and first[8] > 0 and first[9] == 320
    assert first[10] == batch[0].trace_id
    assert [read_image(app.store, r[6]) for r in rows] == [o.jpeg for o in batch]
    shadows = await _rows(app, "SELECT observation_id::text, arm, model_version, prediction_mm "
                               "FROM features.shadow_predictions")
    assert shadows == [(batch[0].observation_id, "shadow", "4", 510.0)]


async def test_same_batch_twice_is_stored_once(stub, app, make_observation, ingest_call):
    batch = [make_observation(i) for i in range(4)]
    first = await ingest_call(stub, batch)
    again = await ingest_call(stub, batch, batch[:2])
    assert (first.stored, first.duplicates) == (4, 0)
    assert (again.stored, again.duplicates, len(again.rejected)) == (0, 6, 0)
    count = await _rows(app, "SELECT count(*) FROM features.observations")
    assert count == [(4,)]


async def test_ids_repeated_across_batches_of_one_call_are_stored_once(stub, app,
                                                                      make_observation,
                                                                      ingest_call):
    # batch 2 is measured while batch 1 is being inserted: the insert, not the
    # look-up, has to catch the repeats
    batch = [make_observation(i) for i in range(4)]
    reply = await ingest_call(stub, batch, batch, batch[1:3])
    assert (reply.stored, reply.duplicates, len(reply.rejected)) == (4, 6, 0)
    count = await _rows(app, "SELECT count(*), count(DISTINCT observation_id) "
                             "FROM features.observations")
    assert count == [(4, 4)]


async def test_repeated_id_within_a_batch_counts_as_duplicate(stub, app, make_observation,
                                                              ingest_call):
    obs = make_observation(0)
    reply = await ingest_call(stub, [obs, obs])
    assert (reply.stored, reply.duplicates) == (1, 1)


async def test_same_id_with_another_time_is_still_a_duplicate(stub, app, make_observation,
                                                             ingest_call):
    obs = make_observation(0)
    moved = observation_pb2.Observation()
    moved.CopyFrom(obs)
    moved.time.seconds += 3600
    await ingest_call(stub, [obs])
    reply = await ingest_call(stub, [moved])
    assert (reply.stored, reply.duplicates) == (0, 1)


@pytest.mark.parametrize("jpeg, reason", [
    (b"", "jpeg: empty"),
    (b"\x89PNG\r\n\x1a\n....", "jpeg: not a JPEG"),
    (b"\xff\xd8\xff\xe0garbage-without-an-end", "jpeg: truncated"),
    (b"\xff\xd8\xff\xe0garbage\xff\xd9", "jpeg: cannot be decoded"),
])
async def test_bad_jpeg_is_rejected_by_id_and_the_rest_stored(stub, app, make_observation,
                                                             ingest_call, jpeg, reason):
    batch = [make_observation(i) for i in range(3)]
    batch[1].jpeg = jpeg
    reply = await ingest_call(stub, batch)
    assert reply.stored == 2
    assert [(r.observation_id, r.reason.startswith(reason)) for r in reply.rejected] == \
        [(batch[1].observation_id, True)], reply.rejected
    ids = await _rows(app, "SELECT observation_id::text FROM features.observations")
    assert {i for (i,) in ids} == {batch[0].observation_id, batch[2].observation_id}
    keys = await _rows(app, "SELECT image_key FROM features.observations")
    stored = {f"{batch[i].observation_id}.jpg": batch[i].jpeg for i in (0, 2)}
    assert _pack_members(app, [k for (k,) in keys]) == stored  # the refused one is in no pack


def _pack_members(app, image_keys: list[str]) -> dict[str, bytes]:
    """Every member of the packs holding these images, read as any tar reader would."""
    members = {}
    for pack in {locate(key).object_key for key in image_keys}:
        with tarfile.open(fileobj=io.BytesIO(app.store.get(pack))) as tar:
            members |= {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    return members


async def test_truncated_jpeg_is_rejected(stub, make_observation, ingest_call):
    good = make_observation(0)
    cut = make_observation(1, jpeg=good.jpeg[: len(good.jpeg) // 2])
    reply = await ingest_call(stub, [cut])
    assert reply.stored == 0 and reply.rejected[0].reason.startswith("jpeg: truncated")


@pytest.mark.parametrize("change, field", [
    (dict(observation_id="not-a-uuid"), "observation_id"),
    (dict(observation_id=""), "observation_id"),
    (dict(device_id=""), "device_id"),
    (dict(deployment=""), "deployment"),
    (dict(deployment="../etc"), "deployment"),
    (dict(sensor_mm=float("nan")), "sensor_mm"),
    (dict(prediction_mm=float("inf")), "prediction_mm"),
    (dict(latency_ms=-1.0), "latency_ms"),
    (dict(session_id="a\x00b"), "session_id"),
])
async def test_invalid_fields_are_rejected_naming_the_field(stub, app, make_observation,
                                                           ingest_call, change, field):
    good = make_observation(0)
    bad = make_observation(1, **change)
    reply = await ingest_call(stub, [good, bad])
    assert reply.stored == 1
    assert len(reply.rejected) == 1
    assert reply.rejected[0].observation_id == bad.observation_id
    assert reply.rejected[0].reason.startswith(f"{field}: "), reply.rejected[0].reason


@pytest.mark.parametrize("field", ["time", "received_at"])
async def test_out_of_range_timestamps_are_rejected(stub, make_observation, ingest_call, field):
    good, bad = make_observation(0), make_observation(1)
    getattr(bad, field).seconds = 10**12  # year 33658: protobuf carries it, Python cannot
    reply = await ingest_call(stub, [good, bad])
    assert reply.stored == 1
    assert reply.rejected[0].reason.startswith(f"{field}: not a valid timestamp")


async def test_an_unexpected_error_rejects_only_its_observation(stub, make_observation,
                                                                ingest_call, monkeypatch):
    from edgeloop.features import prepare

    real = prepare.jpeg_stats
    poison = make_observation(1)

    def failing(jpeg: bytes):
        if jpeg == poison.jpeg:
            raise RuntimeError("a bug met by one frame")
        return real(jpeg)

    monkeypatch.setattr(prepare, "jpeg_stats", failing)
    reply = await ingest_call(stub, [make_observation(0), poison, make_observation(2)])
    assert reply.stored == 2
    assert [(r.observation_id, r.reason) for r in reply.rejected] == [
        (poison.observation_id, "internal error while processing it (RuntimeError)")]


async def test_missing_time_is_rejected(stub, make_observation, ingest_call):
    obs = make_observation(0)
    obs.ClearField("time")
    reply = await ingest_call(stub, [obs])
    assert reply.rejected[0].reason == "time: required"


async def test_observation_id_is_stored_in_canonical_form(stub, app, make_observation, ingest_call):
    oid = uuid.uuid4()
    reply = await ingest_call(stub, [make_observation(0, observation_id=str(oid).upper())])
    assert reply.stored == 1
    again = await ingest_call(stub, [make_observation(0, observation_id=str(oid))])
    assert again.duplicates == 1


async def test_observation_without_model_or_label_is_stored(stub, app, make_observation,
                                                            ingest_call):
    obs = make_observation(0, model_name="", model_version="", arm="none")
    obs.ClearField("prediction_mm")
    obs.ClearField("sensor_mm")
    reply = await ingest_call(stub, [obs])
    assert reply.stored == 1
    rows = await _rows(app, "SELECT prediction_mm, sensor_mm, error_mm, arm "
                            "FROM features.observations")
    assert rows == [(None, None, None, "none")]


async def test_empty_call_stores_nothing(stub):
    reply = await stub.Ingest(iter([pb.IngestRequest()]), timeout=10)
    assert (reply.stored, reply.duplicates, len(reply.rejected)) == (0, 0, 0)
