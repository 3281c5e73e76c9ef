"""GetWindowStats over gRPC against values computed here with numpy, and the rollup view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.features.statistics import STAT_NAMES
from psycopg.rows import dict_row

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # on a 5-minute boundary


def _request(start: datetime, end: datetime, **fields) -> pb.GetWindowStatsRequest:
    request = pb.GetWindowStatsRequest(**fields)
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)
    return request


@pytest.fixture
async def window(stub, make_observation, ingest_call, jpeg_of, scene_of):
    """30 observations of deployment "w", one every 20 s from 12:00 (three 5-minute
    buckets... and a half), every fifth unlabelled; plus noise in another deployment
    and one "w" observation after the window."""
    rng = np.random.default_rng(7)
    jpegs = [jpeg_of(scene_of(i)) for i in range(4)]
    observations = []
    for i in range(30):
        obs = make_observation(i, jpeg=jpegs[i % 4], deployment="w",
                               time=START + timedelta(seconds=20 * i),
                               prediction_mm=float(rng.uniform(100, 900)),
                               sensor_mm=float(rng.uniform(100, 900)),
                               latency_ms=float(rng.uniform(1, 10)))
        if i % 5 == 4:
            obs.ClearField("sensor_mm")
        observations.append(obs)
    others = [make_observation(100 + i, deployment="other", time=START + timedelta(seconds=i))
              for i in range(3)]
    late = make_observation(200, deployment="w", time=START + timedelta(minutes=11))
    reply = await ingest_call(stub, observations + others + [late])
    assert reply.stored == 34
    return observations


async def _stored_stats(app) -> dict[str, np.ndarray]:
    """Every statistic of the window's rows, read back from the table."""
    async with app.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        # real columns read as float8, as the service does (text would round them)
        await cursor.execute("SELECT *, prediction_mm::float8 AS prediction_mm, "
                             "sensor_mm::float8 AS sensor_mm, error_mm::float8 AS error_mm, "
                             "latency_ms::float8 AS latency_ms "
                             "FROM features.observations WHERE deployment = 'w' "
                             "AND time < %s ORDER BY time", (START + timedelta(minutes=10),))
        rows = await cursor.fetchall()
    values = {name: np.array([r[name] for r in rows], float) for name in STAT_NAMES}
    for name in ("prediction_mm", "sensor_mm", "error_mm", "latency_ms"):
        values[name] = np.array([r[name] for r in rows if r[name] is not None], float)
    values["abs_error_mm"] = np.abs(values["error_mm"])
    return values


async def test_counts_and_summaries_match_numpy(stub, app, window):
    reply = await stub.GetWindowStats(_request(START, START + timedelta(minutes=10),
                                               deployment="w", histogram_bins=8), timeout=30)
    assert (reply.observation_count, reply.labelled_count) == (30, 24)
    expected = await _stored_stats(app)
    names = [s.name for s in reply.stats]
    assert names == [*STAT_NAMES, "prediction_mm", "sensor_mm", "error_mm", "abs_error_mm",
                     "latency_ms"]
    for summary in reply.stats:
        values = expected[summary.name]
        assert summary.count == len(values), summary.name
        assert summary.mean == pytest.approx(values.mean(), rel=1e-6), summary.name
        assert (summary.min, summary.max) == pytest.approx((values.min(), values.max()), rel=1e-6)
        assert summary.stddev == pytest.approx(values.std(), rel=1e-6, abs=1e-9), summary.name
        counts, _ = np.histogram(values, bins=np.array(summary.histogram.edges))
        assert list(summary.histogram.counts) == counts.tolist(), summary.name
        assert sum(summary.histogram.counts) == len(values)
    errors = expected["error_mm"]
    sent = [o.prediction_mm - o.sensor_mm for o in window if o.HasField("sensor_mm")]
    assert sorted(errors) == pytest.approx(sorted(sent), abs=1e-3)


async def test_constant_statistic_has_one_full_bin(stub, window):
    reply = await stub.GetWindowStats(_request(START, START + timedelta(minutes=10),
                                               deployment="w"), timeout=30)
    width = next(s for s in reply.stats if s.name == "latency_ms")
    assert width.count == 30
    assert len(width.histogram.edges) == 21 and len(width.histogram.counts) == 20
    # the same four scenes repeat: each statistic has at most four distinct values
    keypoints = next(s for s in reply.stats if s.name == "keypoints")
    assert sum(1 for c in keypoints.histogram.counts if c) <= 4


async def test_five_minute_buckets_equal_the_rollup_view(stub, app, window):
    reply = await stub.GetWindowStats(_request(START, START + timedelta(minutes=10),
                                               deployment="w"), timeout=30)
    assert [b.start.ToDatetime(tzinfo=UTC) for b in reply.buckets] == \
        [START, START + timedelta(minutes=5)]
    assert [b.count for b in reply.buckets] == [15, 15]
    async with app.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute("SELECT * FROM features.observations_5m WHERE deployment = 'w' "
                             "ORDER BY bucket")
        view = await cursor.fetchall()
    assert [r["observation_count"] for r in view] == [15, 15, 1]
    for bucket, row in zip(reply.buckets, view, strict=False):
        assert bucket.means["saturation"] == pytest.approx(float(row["avg_saturation"]))
        assert bucket.means["abs_error_mm"] == pytest.approx(float(row["avg_abs_error_mm"]))
        assert bucket.count == row["observation_count"]
    first = window[:15]
    assert reply.buckets[0].means["prediction_mm"] == pytest.approx(
        np.mean([o.prediction_mm for o in first]), rel=1e-6)


async def test_other_bucket_widths_are_computed_on_the_fly(stub, window):
    reply = await stub.GetWindowStats(_request(START, START + timedelta(minutes=10),
                                               deployment="w", bucket_seconds=60), timeout=30)
    assert [b.count for b in reply.buckets] == [3] * 10
    assert reply.buckets[1].start.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=1)
    sensor = [o.sensor_mm for o in window[3:6] if o.HasField("sensor_mm")]
    assert reply.buckets[1].means["sensor_mm"] == pytest.approx(np.mean(sensor), rel=1e-6)


async def test_buckets_are_whole_buckets_overlapping_the_window(stub, window):
    reply = await stub.GetWindowStats(_request(START + timedelta(minutes=2),
                                               START + timedelta(minutes=6), deployment="w"),
                                      timeout=30)
    assert reply.observation_count == 12  # 12:02:00 .. 12:05:40
    assert [b.count for b in reply.buckets] == [15, 15]


async def test_empty_window(stub, window):
    reply = await stub.GetWindowStats(_request(START - timedelta(hours=1),
                                               START - timedelta(minutes=30), deployment="w"),
                                      timeout=30)
    assert reply.observation_count == 0 and not reply.buckets
    assert all(s.count == 0 and not s.histogram.counts for s in reply.stats)


async def test_default_window_is_the_last_five_minutes(stub, make_observation, ingest_call):
    now = datetime.now(UTC)
    recent = make_observation(0, deployment="live", time=now - timedelta(minutes=1))
    old = make_observation(1, deployment="live", time=now - timedelta(minutes=7))
    await ingest_call(stub, [recent, old])
    reply = await stub.GetWindowStats(pb.GetWindowStatsRequest(deployment="live"), timeout=30)
    assert reply.observation_count == 1
    window = reply.end_time.ToDatetime() - reply.start_time.ToDatetime()
    assert window == timedelta(minutes=5)


@pytest.mark.parametrize("fields, field", [
    (dict(), "deployment"),
    (dict(deployment="w", histogram_bins=5000), "histogram_bins"),
    (dict(deployment="w", bucket_seconds=10**7), "bucket_seconds"),
])
async def test_bad_requests_name_the_field(stub, features, fields, field):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetWindowStats(pb.GetWindowStatsRequest(**fields), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field)


async def test_start_after_end_is_invalid(stub, features):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetWindowStats(_request(START, START - timedelta(minutes=1), deployment="w"),
                                  timeout=10)
    assert err.value.details().startswith("start_time")
