"""Plain PostgreSQL's retention: with ``EDGELOOP_RETENTION_DAYS`` the rows older than that go
from the three tables TimescaleDB's policy covers, in batches, and their images two days
later; recent rows and their images stay. The service runs in-process on the real cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as pb_grpc
from edgeloop.features.app import build_app
from edgeloop.features.image_retention import MARGIN_DAYS
from edgeloop.features.row_retention import delete_expired_rows
from edgeloop.features.settings import Settings
from edgeloop.platform import serve
from grpc import aio

pytestmark = pytest.mark.db_branches("plain")

DAY = timedelta(days=1)
RETENTION_DAYS = 3


def _settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, object_store_dir=str(tmp_path / "objects"),
                    listen_addr="127.0.0.1:0", log_format="text", retention_days=RETENTION_DAYS)


async def _list(stub: pb_grpc.FeatureStoreServiceStub, deployment: str) -> list:
    request = pb.ListObservationsRequest(deployments=[deployment], include_jpeg=True)
    return [obs async for page in stub.ListObservations(request, timeout=60)
            for obs in page.observations]


def _sql(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def _side_rows(url: str, times: list[datetime]) -> None:
    """A shadow prediction and a gateway sample at each of ``times``."""
    for i, at in enumerate(times):
        _sql(url, "INSERT INTO features.shadow_predictions (observation_id, time, arm, "
             "prediction_mm) VALUES (gen_random_uuid(), %s, 'shadow', 500)", at)
        _sql(url, "INSERT INTO features.gateway_samples (time, gateway_id, backlog_bytes, "
             "max_bytes, recording, robots_streaming, streams_open, frames_per_s, "
             "not_recorded_per_s) VALUES (%s, %s, 0, 1, 'RECORDING', 1, 1, 4, 0)", at, f"gw-{i}")


async def test_rows_past_the_retention_go_and_their_images_two_days_later(
        database_url, tmp_path, make_observation, ingest_call, jpeg_of, scene_of,
        first_retention_pass):
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - day * DAY - timedelta(hours=1) for day in range(9)]  # 3..8 are past
    settings = _settings(database_url, tmp_path)
    async with serve(build_app(settings), settings) as running, \
            aio.insecure_channel(running.address) as channel:
        await first_retention_pass(running.app.retention)
        _side_rows(database_url, [times[0], times[5]])
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        batch = [make_observation(day, jpeg=jpeg_of(scene_of(day)), deployment="aging", time=at)
                 for day, at in enumerate(times)]
        assert (await ingest_call(stub, batch)).stored == 9

        done = await running.app.retention.sweep_once()

        assert done.rows == {"observations": 6, "shadow_predictions": 1, "gateway_samples": 1}
        oldest_kept = now.date() - (RETENTION_DAYS + MARGIN_DAYS) * DAY
        assert sorted(done.images) == sorted(
            {f"features/aging/{at.date().isoformat()}/" for at in times if at.date() < oldest_kept})
        kept = await _list(stub, "aging")
        assert sorted(o.seq for o in kept) == [0, 1, 2]
        assert all(o.jpeg for o in kept), "every row left has its image"
        assert _sql(database_url, "SELECT count(*) FROM features.shadow_predictions") == [(1,)]
        assert _sql(database_url, "SELECT count(*) FROM features.gateway_samples") == [(1,)]
        again = await running.app.retention.sweep_once()
        assert again.rows == {} and again.images == {}


async def test_rows_go_a_batch_at_a_time_until_none_is_past(
        database_url, tmp_path, make_observation, ingest_call, first_retention_pass):
    now = datetime.now(UTC).replace(microsecond=0)
    settings = _settings(database_url, tmp_path)
    async with serve(build_app(settings), settings) as running, \
            aio.insecure_channel(running.address) as channel:
        await first_retention_pass(running.app.retention)
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        old = [make_observation(i, deployment="many", time=now - 5 * DAY + timedelta(minutes=i))
               for i in range(11)]
        new = [make_observation(100 + i, deployment="many", time=now - timedelta(minutes=i))
               for i in range(2)]
        assert (await ingest_call(stub, old + new)).stored == 13

        deleted = await delete_expired_rows(running.app.pool, RETENTION_DAYS, now, batch=4)

        assert deleted == {"observations": 11}  # batches of 4, 4, 3
        assert sorted(o.seq for o in await _list(stub, "many")) == [100, 101]
