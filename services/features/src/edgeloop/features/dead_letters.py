"""The dead-letter store: observations Ingest refused, kept whole instead of dropped.

A robot is answered before its frame is recorded, so an observation that features
refuses (invalid, undecodable, refused by the database) must not vanish: it is stored
here with its reason, and the sender acknowledges it like a stored one (retrying a
refusal for ever would block its queue). Operators list dead letters and replay them
once the cause is fixed (``edgeloop dead-letters``), optionally filing them under a
deployment, e.g. frames sent by an old gateway without one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from edgeloop.contracts.features.v1 import dead_letter_pb2 as pb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.prepare import Rejection
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

if TYPE_CHECKING:
    from edgeloop.features.ingest import Ingestor

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
REPLAY_PAGE = 64

_RECORD = (
    "INSERT INTO features.dead_letters (observation_id, payload_sha256, device_id, deployment, "
    "reason, observation) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (observation_id, payload_sha256) DO UPDATE SET reason = EXCLUDED.reason, "
    "attempts = features.dead_letters.attempts + 1, last_refused_at = now() "
    "RETURNING dead_letter_id")
_COLUMNS = ("dead_letter_id, observation_id, device_id, deployment, reason, first_refused_at, "
            "last_refused_at, attempts, octet_length(observation) AS size_bytes")


async def record(pool: AsyncConnectionPool, rejected: Sequence[Rejection]) -> list[Rejection]:
    """Keep every rejected observation; the rejections with their dead-letter ids."""
    kept = []
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        for rejection in rejected:
            if rejection.observation is None:
                kept.append(rejection)
                continue
            payload = rejection.observation.SerializeToString()
            await cursor.execute(_RECORD, (
                _column_text(rejection.observation_id), hashlib.sha256(payload).digest(),
                _column_text(rejection.observation.device_id),
                _column_text(rejection.observation.deployment),
                _column_text(rejection.reason, None), payload))
            row = await cursor.fetchone()
            kept.append(replace(rejection, dead_letter_id=row[0] if row else 0))
    for rejection in kept:
        log.warning("observation refused; kept as a dead letter", extra={
            "observation_id": rejection.observation_id, "reason": rejection.reason,
            "dead_letter_id": rejection.dead_letter_id})
    return kept


def _column_text(value: str, limit: int | None = 200) -> str:
    """``value`` as a text column can hold it: PostgreSQL text cannot contain NUL, and a
    refused observation may carry one in any field (the payload keeps the original)."""
    return value.replace("\x00", "\ufffd")[:limit]


def _filters(deployment: str, device_id: str) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if deployment:
        clauses.append("deployment = %s")
        params.append(deployment)
    if device_id:
        clauses.append("device_id = %s")
        params.append(device_id)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def list_dead_letters(pool: AsyncConnectionPool,
                            request: pb.ListDeadLettersRequest) -> pb.ListDeadLettersResponse:
    """The matching dead letters, newest first, and how many match in all."""
    where, params = _filters(request.deployment, request.device_id)
    limit = request.limit or DEFAULT_LIMIT
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(f"SELECT count(*) AS n FROM features.dead_letters{where}", params)
        total = (await cursor.fetchone() or {"n": 0})["n"]
        await cursor.execute(f"SELECT {_COLUMNS} FROM features.dead_letters{where} "
                             "ORDER BY last_refused_at DESC, dead_letter_id DESC LIMIT %s",
                             [*params, limit])
        rows = await cursor.fetchall()
    return pb.ListDeadLettersResponse(total=total, dead_letters=[pb.DeadLetter(
        dead_letter_id=row["dead_letter_id"], observation_id=row["observation_id"],
        device_id=row["device_id"], deployment=row["deployment"], reason=row["reason"],
        first_refused_at=_timestamp(row["first_refused_at"]),
        last_refused_at=_timestamp(row["last_refused_at"]), attempts=row["attempts"],
        size_bytes=row["size_bytes"]) for row in rows])


@dataclass
class _Letter:
    dead_letter_id: int
    observation: observation_pb2.Observation


async def _page(pool: AsyncConnectionPool, ids: Sequence[int], after: int) -> list[_Letter]:
    query = ("SELECT dead_letter_id, observation FROM features.dead_letters "
             "WHERE dead_letter_id > %s")
    params: list[Any] = [after]
    if ids:
        query += " AND dead_letter_id = ANY(%s)"
        params.append(list(ids))
    query += " ORDER BY dead_letter_id LIMIT %s"
    params.append(REPLAY_PAGE)
    async with pool.connection() as conn, conn.cursor() as cursor:
        await cursor.execute(query, params)
        rows = await cursor.fetchall()
    return [_Letter(row[0], observation_pb2.Observation.FromString(row[1])) for row in rows]


def _refile(observation: observation_pb2.Observation,
            request: pb.ReplayDeadLettersRequest) -> None:
    if request.deployment:
        observation.deployment = request.deployment
        observation.data_group = request.data_group or request.deployment
    elif request.data_group:
        observation.data_group = request.data_group


async def replay(pool: AsyncConnectionPool, ingestor: Ingestor,
                 request: pb.ReplayDeadLettersRequest) -> pb.ReplayDeadLettersResponse:
    """Ingest the chosen dead letters again: stored ones leave, refused ones stay."""
    response = pb.ReplayDeadLettersResponse()
    after = 0
    while letters := await _page(pool, request.dead_letter_ids, after):
        after = letters[-1].dead_letter_id
        for letter in letters:
            _refile(letter.observation, request)
        result = await ingestor.ingest([letter.observation for letter in letters],
                                       dead_letters=False)
        refused = {id(r.observation): r.reason for r in result.rejected}
        await _settle(pool, letters, refused, response)
        response.stored += result.stored
        response.duplicates += result.duplicates
    return response


async def _settle(pool: AsyncConnectionPool, letters: list[_Letter], refused: dict[int, str],
                  response: pb.ReplayDeadLettersResponse) -> None:
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        for letter in letters:
            reason = refused.get(id(letter.observation))
            if reason is None:
                await cursor.execute("DELETE FROM features.dead_letters WHERE dead_letter_id = %s",
                                     (letter.dead_letter_id,))
                continue
            await cursor.execute(
                "UPDATE features.dead_letters SET reason = %s, attempts = attempts + 1, "
                "last_refused_at = now(), observation = %s WHERE dead_letter_id = %s",
                (reason, letter.observation.SerializeToString(), letter.dead_letter_id))
            response.still_refused += 1
            response.reasons[letter.dead_letter_id] = reason
