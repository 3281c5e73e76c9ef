"""Ingest of observation batches: check ids, skip known ones, measure, store, insert.

For each batch: ids are checked and made canonical; ids already stored (or repeated
in the batch) count as duplicates and cost nothing more; the rest are measured and
their images stored on the thread pool (:mod:`edgeloop.features.prepare`), then
written in one statement (:mod:`edgeloop.features.writes`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import cv2
from edgeloop.contracts.features.v1 import feature_store_service_pb2, observation_pb2
from edgeloop.features.dead_letters import record as record_dead_letters
from edgeloop.features.prepare import Rejection, prepare_chunk
from edgeloop.features.rows import PreparedObservation
from edgeloop.features.tracing import frame_links, tracer
from edgeloop.features.validation import canonical_uuid
from edgeloop.features.writes import existing_ids, write_batch
from edgeloop.platform.errors import InvalidArgument
from edgeloop.platform.objectstore import ObjectStore
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)
Pending = list[tuple[observation_pb2.Observation, str]]


@dataclass
class IngestResult:
    """Counts of one call (or batch): stored now, already stored, refused."""

    stored: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        """Add ``other``'s counts to these."""
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)

    def to_proto(self) -> feature_store_service_pb2.IngestResponse:
        """The ``IngestResponse`` of these counts."""
        return feature_store_service_pb2.IngestResponse(
            stored=self.stored, duplicates=self.duplicates,
            rejected=[feature_store_service_pb2.Rejection(observation_id=r.observation_id,
                                                          reason=r.reason,
                                                          dead_letter_id=r.dead_letter_id)
                      for r in self.rejected])


def _split_ids(observations: Sequence[observation_pb2.Observation],
               result: IngestResult) -> Pending:
    """Observations with valid, first-seen ids; bad ids are rejected, repeats are duplicates."""
    seen: set[str] = set()
    pending: Pending = []
    for index, obs in enumerate(observations):
        try:
            observation_id = canonical_uuid(obs.observation_id, "observation_id")
        except InvalidArgument as exc:
            result.rejected.append(Rejection(obs.observation_id,
                                             f"{exc.message} (observation {index} of the batch)",
                                             obs))
            continue
        if observation_id in seen:
            result.duplicates += 1
            continue
        seen.add(observation_id)
        pending.append((obs, observation_id))
    return pending


@dataclass
class Staged:
    """A batch measured and with its images stored, waiting to be inserted."""

    result: IngestResult = field(default_factory=IngestResult)
    prepared: list[PreparedObservation] = field(default_factory=list)
    by_id: dict[str, observation_pb2.Observation] = field(default_factory=dict)
    """The observations being stored, by canonical id (what a later refusal names)."""


class Ingestor:
    """Ingests batches with a thread pool for statistics and a connection pool for rows."""

    def __init__(self, pool: AsyncConnectionPool, store: ObjectStore, workers: int = 0) -> None:
        self.pool = pool
        self.store = store
        # Two per CPU by default: while one thread waits on an image write, another
        # keeps the core busy with OpenCV.
        self.workers = workers or 2 * (os.cpu_count() or 1)
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="features-ingest")
        if self.workers > 1:
            # Parallelism comes from the pool; OpenCV's own threads on small frames
            # would only contend with it.
            cv2.setNumThreads(1)

    def close(self) -> None:
        """Stop the threads after their current work."""
        self.executor.shutdown(wait=True)

    async def _prepare(self, pending: Pending) -> list[PreparedObservation | Rejection]:
        loop = asyncio.get_running_loop()
        now = datetime.now(UTC)
        size = -(-len(pending) // self.workers)  # ceil: one contiguous chunk per thread
        chunks = [pending[i:i + size] for i in range(0, len(pending), size)]
        # Each thread runs in a copy of this context, so its object-store spans are
        # children of the batch span rather than traces of their own.
        done = await asyncio.gather(*(loop.run_in_executor(
            self.executor, contextvars.copy_context().run, prepare_chunk, chunk, now, self.store)
            for chunk in chunks))
        return [item for chunk in done for item in chunk]

    async def stage(self, observations: Sequence[observation_pb2.Observation]) -> Staged:
        """Check ids, skip stored ones, measure the rest and store their images."""
        staged = Staged()
        pending = _split_ids(observations, staged.result)
        if not pending:
            return staged
        known = await existing_ids(self.pool, [observation_id for _, observation_id in pending])
        staged.result.duplicates += len(known)
        pending = [(obs, oid) for obs, oid in pending if oid not in known]
        if not pending:
            return staged
        staged.by_id = {observation_id: obs for obs, observation_id in pending}
        for item in await self._prepare(pending):
            if isinstance(item, Rejection):
                staged.result.rejected.append(item)
            else:
                staged.prepared.append(item)
        return staged

    async def commit(self, staged: Staged, dead_letters: bool = True) -> IngestResult:
        """Insert a staged batch; the batch's counts. Refused observations are kept in the
        dead-letter store unless ``dead_letters`` is False (a replay of dead letters)."""
        result = staged.result
        written = await write_batch(self.pool, staged.prepared)
        result.stored += len(written.stored)
        result.rejected.extend(replace(r, observation=staged.by_id.get(r.observation_id))
                               for r in written.rejected)
        # Lost a race with a concurrent writer of the same id: a duplicate, not an error.
        result.duplicates += len(staged.prepared) - len(written.stored) - len(written.rejected)
        if dead_letters and result.rejected:
            result.rejected = await record_dead_letters(self.pool, result.rejected)
        return result

    async def ingest(self, observations: Sequence[observation_pb2.Observation],
                     dead_letters: bool = True) -> IngestResult:
        """Store one batch; bad observations are rejected by id (and kept as dead letters
        unless ``dead_letters`` is False), the rest stored once."""
        return await self.commit(await self.stage(observations), dead_letters)

    async def ingest_stream(self, batches: AsyncIterator[Sequence[observation_pb2.Observation]],
                            ) -> IngestResult:
        """Store every batch of a stream, measuring batch N+1 while batch N is inserted.

        An id repeated in consecutive batches is still stored once: the insert skips
        ids that exist, and the loser of that race counts as a duplicate.
        """
        total = IngestResult()
        writing: asyncio.Task[IngestResult] | None = None
        try:
            async for batch in batches:
                with tracer.start_as_current_span("features.ingest_batch", links=frame_links(batch),
                                                  attributes={"observations": len(batch)}):
                    staged = await self.stage(batch)
                    if writing is not None:
                        total.add(await writing)
                    # the task copies the context: its insert spans are this batch's children
                    writing = asyncio.create_task(self.commit(staged))
            if writing is not None:
                total.add(await writing)
                writing = None
        finally:
            if writing is not None:  # the call failed or was cancelled mid-stream
                writing.cancel()
        return total
