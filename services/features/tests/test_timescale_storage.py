"""TimescaleDB doing its work: compressed chunks still read, and the 5-minute continuous
aggregate answering past the raw retention.

Runs on the TimescaleDB branch only (skipped, saying why, where it is not installed).
The service is served in-process over the real cluster; compression and retention are
triggered here with the same functions the policies call (``compress_chunk``,
``drop_chunks``), instead of waiting for the policies' schedules.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as pb_grpc
from edgeloop.features.app import build_app
from edgeloop.features.schema import SCHEMA, Policies, branch_sql, split_statements
from edgeloop.features.settings import Settings
from edgeloop.platform import serve
from edgeloop.platform.migrations import apply_migrations, load_migrations
from edgeloop.testing.fixtures import cluster_of
from grpc import aio

pytestmark = pytest.mark.db_branches("timescaledb")

DAY = timedelta(days=1)
RETENTION_DAYS = 3


async def _list(stub: pb_grpc.FeatureStoreServiceStub, deployment: str = "compressed",
                **fields) -> list:
    request = pb.ListObservationsRequest(deployments=[deployment], include_jpeg=True, **fields)
    return [obs async for page in stub.ListObservations(request, timeout=60)
            for obs in page.observations]


def _sql(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


async def test_compressed_chunks_are_still_listed_and_deduplicated(
        database_url, stub, make_observation, ingest_call, jpeg_of, scene_of):
    start = datetime.now(UTC).replace(microsecond=0) - 3 * DAY
    jpeg = jpeg_of(scene_of(1))
    batch = [make_observation(i, jpeg=jpeg, deployment="compressed",
                              time=start + timedelta(hours=i)) for i in range(30)]
    assert (await ingest_call(stub, batch)).stored == 30
    before = await _list(stub)

    compressed = _sql(database_url, "SELECT compress_chunk(c) FROM "
                      "show_chunks('features.observations') c")
    assert len(compressed) >= 2  # 30 hours span two or three 1-day chunks
    states = _sql(database_url, "SELECT is_compressed FROM timescaledb_information.chunks "
                  "WHERE hypertable_name = 'observations'")
    assert states and all(done for (done,) in states)
    # the rows live in the compressed chunks now, not as plain heap rows
    assert _sql(database_url, "SELECT count(*) FROM ONLY features.observations") == [(0,)]

    after = await _list(stub)
    assert [o.observation_id for o in after] == [o.observation_id for o in before]
    assert after == before  # every field and the image, as stored
    window = await _list(stub, start_time=after[10].time, end_time=after[20].time)
    assert [o.seq for o in window] == list(range(10, 20))

    # a robot resending the batch (late frames into compressed chunks): stored once
    again = await ingest_call(stub, batch)
    assert again.stored == 0 and again.duplicates == 30
    assert _sql(database_url, "SELECT count(*) FROM features.observations") == [(30,)]


@pytest.fixture
async def kept_stub(database_url: str,
                    tmp_path: Path) -> AsyncIterator[pb_grpc.FeatureStoreServiceStub]:
    """The service with a 3-day raw retention (its rollup refresh looks back 2 days)."""
    settings = Settings(database_url=database_url, object_store_dir=str(tmp_path / "objects"),
                        listen_addr="127.0.0.1:0", log_format="text",
                        retention_days=RETENTION_DAYS)
    async with serve(build_app(settings), settings) as running, \
            aio.insecure_channel(running.address) as channel:
        yield pb_grpc.FeatureStoreServiceStub(channel)


def _refresh_rollup(conn: psycopg.Connection, attempts: int = 60) -> None:
    """Refresh the 5-minute rollup up to today; a run of its policy that started before the
    test paused it holds the rollup until it ends, so a refusal is waited out."""
    for attempt in range(attempts):
        try:
            conn.execute("CALL refresh_continuous_aggregate('features.observations_5m', NULL, "
                         "date_trunc('day', now()))")
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)


def _window(start: datetime, end: datetime, bucket_seconds: int) -> pb.GetWindowStatsRequest:
    request = pb.GetWindowStatsRequest(deployment="long", bucket_seconds=bucket_seconds)
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)
    return request


async def test_window_stats_reach_past_the_raw_retention(
        database_url, kept_stub, make_observation, ingest_call, jpeg_of, scene_of):
    # The service's policies run on TimescaleDB's own schedule: paused here, so the retention
    # does not drop the old days before the rollup below has seen them, and the refresh
    # policy does not hold the rollup while this test refreshes it.
    _sql(database_url, "SELECT alter_job(job_id, scheduled => false) "
         "FROM timescaledb_information.jobs WHERE proc_name IN "
         "('policy_retention', 'policy_refresh_continuous_aggregate')")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = today - 8 * DAY
    jpegs = [jpeg_of(scene_of(i)) for i in range(3)]
    rng = np.random.default_rng(3)
    batch, by_day = [], {}
    for day in range(8):  # eight whole days before today, 6 frames a day
        for k in range(6):
            at = first_day + day * DAY + timedelta(hours=3 * k, minutes=k)
            obs = make_observation(day * 10 + k, jpeg=jpegs[k % 3], deployment="long", time=at,
                                   prediction_mm=float(rng.uniform(100, 900)))
            batch.append(obs)
            by_day.setdefault(day, []).append(obs)
    assert (await ingest_call(kept_stub, batch)).stored == 48

    # Materialise the rollup, then let retention drop raw chunks, as its policy would.
    with psycopg.connect(database_url, autocommit=True) as conn:
        _refresh_rollup(conn)
        dropped = conn.execute("SELECT drop_chunks('features.observations', "
                               "older_than => now() - make_interval(days => %s))",
                               (RETENTION_DAYS,)).fetchall()
    assert len(dropped) >= 4
    kept = _sql(database_url, "SELECT count(*) FROM features.observations "
                "WHERE deployment = 'long'")[0][0]
    assert 0 < kept < 48

    end = today
    daily = await kept_stub.GetWindowStats(_window(first_day, end, 86400), timeout=60)
    assert daily.observation_count == kept  # the summary covers the raw rows still kept
    assert [b.start.ToDatetime(tzinfo=UTC) for b in daily.buckets] == \
        [first_day + d * DAY for d in range(8)]
    assert [b.count for b in daily.buckets] == [6] * 8  # the rollup still has every day
    for day, bucket in enumerate(daily.buckets):
        assert bucket.means["prediction_mm"] == pytest.approx(
            np.mean([o.prediction_mm for o in by_day[day]]), rel=1e-5)
        assert bucket.means["latency_ms"] == pytest.approx(4.5)

    five = await kept_stub.GetWindowStats(_window(first_day, first_day + DAY, 300), timeout=60)
    assert five.observation_count == 0  # that day's raw rows are gone...
    assert [b.count for b in five.buckets] == [1] * 6  # ...its 5-minute buckets are not
    assert five.buckets[1].means["prediction_mm"] == pytest.approx(by_day[0][1].prediction_mm,
                                                                   rel=1e-5)


_OBSERVATION = ("INSERT INTO features.observations (observation_id, time, device_id, deployment, "
                "image_key, image_bytes, width, height, mean_r, mean_g, mean_b, hue, saturation, "
                "brightness, contrast, sharpness, edge_density, keypoints, entropy{extra}) "
                "SELECT gen_random_uuid(), now() - make_interval(hours => g), 'car', 'old', "
                "'k', 1, 320, 240, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1{value} "
                "FROM generate_series({first}, {last}) g")


async def test_the_latest_migration_upgrades_a_database_with_compressed_chunks(
        request: pytest.FixtureRequest, db_branch: str) -> None:
    # A fleet's database upgraded in place: its older chunks are compressed by then, and a
    # migration that adds a column (0008: device_quantized) must apply to them too.
    url = cluster_of(request, db_branch).ensure_database(f"upgrade_{uuid.uuid4().hex[:10]}")
    migrations = load_migrations("edgeloop.features")
    latest = migrations[-1].version
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await apply_migrations(conn, SCHEMA, migrations[:-1])
        for statement in split_statements(branch_sql(True, Policies())):
            await conn.execute(statement.encode())
        await conn.execute(_OBSERVATION.format(extra="", value="", first=1, last=60).encode())
        compressed = await (await conn.execute(
            "SELECT count(compress_chunk(c)) FROM show_chunks('features.observations') c"
        )).fetchone()
        assert compressed is not None and compressed[0] >= 2  # 60 hours: three 1-day chunks
        assert await apply_migrations(conn, SCHEMA, migrations) == [latest]
        await conn.execute(_OBSERVATION.format(extra=", device_quantized", value=", true",
                                               first=30, last=30).encode())
        counts = await (await conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE device_quantized) "
            "FROM features.observations")).fetchone()
    assert counts == (61, 1), "old rows read with the default, the new one as written"


async def test_images_of_the_days_the_retention_dropped_are_deleted(
        database_url, tmp_path, make_observation, ingest_call, jpeg_of, scene_of,
        first_retention_pass):
    settings = Settings(database_url=database_url, object_store_dir=str(tmp_path / "objects"),
                        listen_addr="127.0.0.1:0", log_format="text",
                        retention_days=RETENTION_DAYS)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    async with serve(build_app(settings), settings) as running, \
            aio.insecure_channel(running.address) as channel:
        await first_retention_pass(running.app.retention)
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        batch = [make_observation(day, jpeg=jpeg_of(scene_of(day)), deployment="aging",
                                  time=today - day * DAY + timedelta(hours=12))
                 for day in range(9)]  # one frame a day, today and the eight days before
        assert (await ingest_call(stub, batch)).stored == 9
        store = running.app.store
        days = store.folders("features/aging/")
        assert len(days) == 9
        _sql(database_url, "SELECT drop_chunks('features.observations', "
             "older_than => now() - make_interval(days => %s))", RETENTION_DAYS)

        done = await running.app.retention.sweep_once()
        deleted = done.images
        assert done.rows == {}, "TimescaleDB's policy drops the rows, not the pass"

        # the rows of day 3 may or may not be gone (its chunk is dropped once the whole day
        # is older than the retention); images go two days after that, never before the rows
        assert sorted(deleted) == sorted(
            f"features/aging/{(today - day * DAY).date().isoformat()}/" for day in range(6, 9))
        assert all(count == 1 for count in deleted.values())  # one pack a day
        assert store.folders("features/aging/") == days[3:]
        kept = await _list(stub, "aging")
        assert len(kept) >= 3 and all(o.jpeg for o in kept)  # every row left has its image
        assert (await running.app.retention.sweep_once()).images == {}


@pytest.mark.db_branches()
async def test_nothing_is_deleted_without_a_retention(database_url, tmp_path):
    settings = Settings(database_url=database_url, object_store_dir=str(tmp_path / "objects"),
                        listen_addr="127.0.0.1:0", log_format="text", retention_days=0)
    async with serve(build_app(settings), settings) as running:
        assert running.app.retention is None

