"""Fixtures: the features service served in-process on loopback over a real PostgreSQL
database (``database_url``, a copy of one the features schema was applied to once per
cluster: :mod:`edgeloop.testing.templates`), a client stub, and synthetic observations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psycopg
import pytest
from edgeloop.contracts.features.v1 import (
    feature_store_service_pb2,
    feature_store_service_pb2_grpc,
    observation_pb2,
)
from edgeloop.features.app import App, build_app
from edgeloop.features.retention import Retention
from edgeloop.features.schema import Policies, ensure_schema
from edgeloop.features.settings import Settings
from edgeloop.platform import serve
from edgeloop.platform.server import RunningServer
from edgeloop.testing.fixtures import cluster_of
from edgeloop.testing.templates import copy_of, prepared_template
from grpc import aio

Pb = feature_store_service_pb2


def encode_jpeg(bgr: np.ndarray, quality: int = 90) -> bytes:
    """``bgr`` as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def scene(seed: int = 0, width: int = 320, height: int = 240) -> np.ndarray:
    """A textured scene: a floor, a wall with an edge, noise (so every statistic is nonzero)."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    horizon = height // 2 + seed % 20
    img[:horizon] = (170, 180, 190)
    img[horizon:] = (60, 100, 150)
    cv2.rectangle(img, (width // 3, horizon - 60), (2 * width // 3, horizon - 10), (30, 30, 30), -1)
    noise = rng.normal(0, 10, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def make_observation() -> Callable[..., observation_pb2.Observation]:
    """A factory of valid observations; keyword arguments override fields."""
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def make(index: int = 0, jpeg: bytes | None = None, time: datetime | None = None,
             **fields: Any) -> observation_pb2.Observation:
        values: dict[str, Any] = dict(
            observation_id=str(uuid.uuid4()), device_id="car-1", session_id="s1", seq=index,
            deployment="parking", data_group="floor-a", model_name="distance",
            model_version="3", arm="stable", prediction_mm=500.0 + index, sensor_mm=490.0 + index,
            latency_ms=4.5, trace_id=uuid.uuid4().hex,
            traceparent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
        )
        values.update(fields)
        obs = observation_pb2.Observation(**values)
        obs.time.FromDatetime(time or base + timedelta(seconds=index))
        obs.received_at.FromDatetime((time or base + timedelta(seconds=index))
                                     + timedelta(milliseconds=20))
        obs.jpeg = encode_jpeg(scene(index)) if jpeg is None else jpeg
        return obs

    return make


def _apply_schema(dsn: str) -> None:
    """The features schema in ``dsn``, as the service applies it at start (default policies;
    the service replaces them at its own start)."""
    async def apply() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await ensure_schema(conn, Policies())
    # in a thread of its own: a fixture may be set up while a test's event loop runs
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, apply()).result()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_branch: str) -> str:
    """A new database for one test holding the features schema (empty tables), on the
    cluster of ``db_branch``: a copy of the session's template, not migrated anew."""
    cluster = cluster_of(request, db_branch)
    return copy_of(cluster, prepared_template(cluster, "features_template", _apply_schema))


def settings_for(database_url: str, objects: Path, **overrides: Any) -> Settings:
    """Settings for a test server on a free loopback port."""
    values: dict[str, Any] = dict(database_url=database_url, object_store_dir=str(objects),
                                  listen_addr="127.0.0.1:0", ingest_workers=2, log_format="text")
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def features(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The features service serving on loopback with a local-folder object store."""
    settings = settings_for(database_url, tmp_path / "objects")
    async with serve(build_app(settings), settings) as running:
        yield running


@pytest.fixture
async def stub(features: RunningServer,
               ) -> AsyncIterator[feature_store_service_pb2_grpc.FeatureStoreServiceStub]:
    """A client of the served features service."""
    async with aio.insecure_channel(features.address) as channel:
        yield feature_store_service_pb2_grpc.FeatureStoreServiceStub(channel)


@pytest.fixture
def app(features: RunningServer) -> App:
    """The served app (its pool and object store)."""
    assert isinstance(features.app, App)
    return features.app


async def ingest(stub: feature_store_service_pb2_grpc.FeatureStoreServiceStub,
                 *batches: list[observation_pb2.Observation],
                 ) -> feature_store_service_pb2.IngestResponse:
    """One Ingest call sending ``batches``."""
    async def requests() -> AsyncIterator[feature_store_service_pb2.IngestRequest]:
        for batch in batches:
            yield feature_store_service_pb2.IngestRequest(observations=batch)

    return await stub.Ingest(requests(), timeout=60)


@pytest.fixture
def ingest_call() -> Callable[..., Any]:
    """:func:`ingest` as a fixture (test modules do not import each other)."""
    return ingest


@pytest.fixture
def jpeg_of() -> Callable[..., bytes]:
    """:func:`encode_jpeg` as a fixture."""
    return encode_jpeg


@pytest.fixture
def scene_of() -> Callable[..., np.ndarray]:
    """:func:`scene` as a fixture."""
    return scene


async def wait_first_retention_pass(retention: Retention, timeout_s: float = 60.0) -> None:
    """Wait out the retention's pass at the service's start, so that a test's own pass is the
    one that meets the test's rows (the service's next pass is an hour away)."""
    async with asyncio.timeout(timeout_s):
        while retention.passes < 1:
            await asyncio.sleep(0.05)


@pytest.fixture
def first_retention_pass() -> Callable[..., Any]:
    """:func:`wait_first_retention_pass` as a fixture."""
    return wait_first_retention_pass
