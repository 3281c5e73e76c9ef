"""ListObservations: dataset queries streamed in pages, oldest first (newest first on request).

Rows come from a server-side cursor, so a dataset of millions of observations is
never held in memory; each page is one response message, split further when the
images asked for would make it larger than :data:`MAX_PAGE_BYTES`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.images import read_image
from edgeloop.features.rows import COLUMNS, from_row
from edgeloop.features.validation import canonical_uuid
from edgeloop.platform.errors import InvalidArgument, NotFound, Unavailable
from edgeloop.platform.objectstore import ObjectStore
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)
PAGE_ROWS = 500
MAX_PAGE_BYTES = 16 * 1024 * 1024
IMAGE_READERS = 8
_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_SELECT = sql.SQL("SELECT {} FROM features.observations").format(_COLUMNS)
# Every k-th match in capture-time order, k = matches / limit rounded up: the database
# still reads every match, but ranks only its key and fetches whole rows for the spread
# ones by the primary key; only those leave it.
_SPREAD = sql.SQL(
    "SELECT {columns} FROM features.observations JOIN (SELECT observation_id, time FROM "
    "(SELECT observation_id, time, "
    "row_number() OVER (ORDER BY time, observation_id) AS spread_rank, "
    "count(*) OVER () AS spread_total FROM features.observations{where}) AS matches "
    "WHERE mod(spread_rank - 1, greatest(1, ceil(spread_total::numeric / %s)::bigint)) = 0"
    ") AS spread USING (observation_id, time)")


def _time_range(request: pb.ListObservationsRequest) -> tuple[datetime | None, datetime | None]:
    start = request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None
    end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None
    if start and end and end <= start:
        raise InvalidArgument("end_time", "must be after start_time")
    return start, end


def build_query(request: pb.ListObservationsRequest) -> tuple[sql.Composed, list[Any]]:
    """The SELECT for ``request`` and its parameters; bad filters name their field."""
    where: list[sql.Composable] = []
    params: list[Any] = []

    def add(clause: str, value: Any) -> None:
        where.append(sql.SQL(clause))
        params.append(value)

    if request.deployments:
        add("deployment = ANY(%s)", list(request.deployments))
    if request.data_groups:
        add("data_group = ANY(%s)", list(request.data_groups))
    if request.device_id:
        add("device_id = %s", request.device_id)
    if request.model_version and not request.model_name:
        raise InvalidArgument("model_version", "needs model_name (versions are per model)")
    if request.model_name:
        add("model_name = %s", request.model_name)
    if request.model_version:
        add("model_version = %s", request.model_version)
    if request.observation_ids:
        ids = [canonical_uuid(v, f"observation_ids[{i}]")
               for i, v in enumerate(request.observation_ids)]
        add("observation_id = ANY(%s::uuid[])", ids)
    start, end = _time_range(request)
    if start:
        add("time >= %s", start)
    if end:
        add("time < %s", end)
    if request.labelled_only:
        where.append(sql.SQL("sensor_mm IS NOT NULL"))
    filters = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL("")
    if request.spread and request.limit:
        query = _SPREAD.format(columns=_COLUMNS, where=filters)
        params.append(request.limit)
    else:
        query = _SELECT + filters
    order = " ORDER BY time DESC, observation_id DESC" if request.newest_first \
        else " ORDER BY time, observation_id"
    query = query + sql.SQL(order)
    if request.limit:
        query = query + sql.SQL(" LIMIT %s")
        params.append(request.limit)
    return query, params


async def _attach_shadows(conn: psycopg.AsyncConnection,
                          page: Sequence[observation_pb2.Observation]) -> None:
    by_id = {obs.observation_id: obs for obs in page}
    cursor = await conn.execute(
        "SELECT observation_id::text, arm, model_name, model_version, prediction_mm "
        "FROM features.shadow_predictions WHERE observation_id = ANY(%s::uuid[]) ORDER BY arm",
        (list(by_id),))
    for observation_id, arm, model_name, model_version, prediction in await cursor.fetchall():
        by_id[observation_id].shadow_predictions.add(
            arm=arm, model_name=model_name, model_version=model_version, prediction_mm=prediction)


def _read_image(store: ObjectStore, obs: observation_pb2.Observation) -> None:
    try:
        obs.jpeg = read_image(store, obs.image_key)
    except NotFound:
        # The row stays useful (statistics, labels); the caller sees an empty jpeg.
        log.warning("image missing from the object store",
                    extra={"observation_id": obs.observation_id, "image_key": obs.image_key})


def _read_images(store: ObjectStore, page: Sequence[observation_pb2.Observation]) -> None:
    # Concurrent reads: against S3 each GET is a round trip, one after another would
    # make a 500-image page take seconds.
    with ThreadPoolExecutor(IMAGE_READERS) as pool:
        list(pool.map(lambda obs: _read_image(store, obs), page))


def _split_by_size(page: list[observation_pb2.Observation],
                   sizes: list[int]) -> list[list[observation_pb2.Observation]]:
    messages: list[list[observation_pb2.Observation]] = [[]]
    used = 0
    for obs, size in zip(page, sizes, strict=True):
        if messages[-1] and used + size > MAX_PAGE_BYTES:
            messages.append([])
            used = 0
        messages[-1].append(obs)
        used += size
    return messages


async def list_observations(pool: AsyncConnectionPool, store: ObjectStore,
                            request: pb.ListObservationsRequest,
                            ) -> AsyncIterator[pb.ListObservationsResponse]:
    """Stream the observations matching ``request`` in pages."""
    query, params = build_query(request)
    try:
        async with (pool.connection() as conn, conn.transaction(),
                    conn.cursor(name="list_observations", row_factory=dict_row) as cursor):
                await cursor.execute(query, params)
                while rows := await cursor.fetchmany(PAGE_ROWS):
                    page = [from_row(row) for row in rows]
                    await _attach_shadows(conn, page)
                    if not request.include_jpeg:
                        yield pb.ListObservationsResponse(observations=page)
                        continue
                    await asyncio.to_thread(_read_images, store, page)
                    for part in _split_by_size(page, [row["image_bytes"] for row in rows]):
                        yield pb.ListObservationsResponse(observations=part)
    except psycopg.OperationalError as exc:
        raise Unavailable(f"database unreachable: {exc}") from exc
