"""The forwarder: moves spooled observations to ``FeatureStore.Ingest`` in order, in batches.

A batch is sent when ``batch_size`` observations are waiting or the oldest has waited
``interval_s``, whichever comes first. The spool's ack offset moves only after features
answered the call, so a failed call (features down, deadline) is retried from the same
place with backoff, and a crash replays from there: at least once, in order; features'
idempotency on observation id makes it exactly once.

The spool holds serialized observations, and an ``IngestRequest`` is nothing but its
observations as field 1, so requests are assembled from the spooled bytes as they are:
parsing every observation (JPEG included) only to serialize it again cost the gateway
CPU on every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.gateway.spool import Spool
from edgeloop.platform.channels import cancelled_from_outside
from grpc import aio

log = logging.getLogger(__name__)

INGEST_DEADLINE_S = 30.0
"""A batch of a few hundred observations with JPEGs; statistics take time on the other side."""
MESSAGE_OBSERVATIONS = 64
"""Observations per IngestRequest message, keeping messages a few MB at most."""
MAX_BACKOFF_S = 5.0
INGEST_METHOD = "/" + "/".join(
    (fs_pb2.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name, "Ingest"))


class Forwarder:
    """Follows the spool and forwards what is written to features."""

    def __init__(self, spool: Spool, channel: aio.Channel, batch_size: int,
                 interval_s: float) -> None:
        self.spool = spool
        # Ingest with requests given as bytes: see _request_bytes.
        self._ingest = channel.stream_unary(
            INGEST_METHOD, request_serializer=None,
            response_deserializer=fs_pb2.IngestResponse.FromString)
        self.batch_size = batch_size
        self.interval_s = interval_s
        self._unsent_hint = 0
        self._oldest_unsent: float | None = None
        self._written = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.forwarded = 0
        """Observations confirmed by features since start (for logs and tests)."""
        self.forwarded_at: float | None = None
        """Wall-clock time features last confirmed a batch (None: not since start)."""
        self.failing_since: float | None = None
        """Wall-clock time of the first failed call since the last confirmed one (None: the
        last call went through)."""

    def notify_written(self, count: int = 1) -> None:
        """The recorder appended ``count`` observations to the spool."""
        self._unsent_hint += count
        if self._oldest_unsent is None:
            self._oldest_unsent = time.monotonic()
        self._written.set()

    def start(self) -> None:
        """Start forwarding; a backlog left by an earlier run is replayed first."""
        if self.spool.backlog_bytes:
            self.notify_written(self.batch_size)  # replay at once, don't wait for new frames
        self._task = asyncio.create_task(self._run(), name="forwarder")

    async def stop(self) -> None:
        """Stop forwarding; what is not acknowledged stays in the spool for the next start."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Try to forward everything spooled within ``timeout_s`` (at shutdown); True if empty."""
        deadline = time.monotonic() + timeout_s
        while self.spool.backlog_bytes and time.monotonic() < deadline:
            if not await self._forward_once():
                return False
        return not self.spool.backlog_bytes

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            await self._wait_for_batch()
            if await self._send_backlog():
                backoff = 0.1
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            self._written.set()  # retry without waiting for new frames

    async def _send_backlog(self) -> bool:
        """Send full batches while there are any, then what is left; False on failure."""
        try:
            while (sent := await self._forward_once()) == self.batch_size:
                pass
        except Exception:
            log.exception("forwarding failed unexpectedly; retrying")
            sent = None
        if sent is None and self.failing_since is None:
            self.failing_since = time.time()
        return sent is not None

    async def _wait_for_batch(self) -> None:
        await self._written.wait()
        if self._oldest_unsent is not None and self._unsent_hint < self.batch_size:
            remaining = self.interval_s - (time.monotonic() - self._oldest_unsent)
            if remaining > 0:
                await asyncio.sleep(remaining)
        self._written.clear()
        self._unsent_hint = 0
        self._oldest_unsent = None

    async def _forward_once(self) -> int | None:
        """Send one batch from the ack offset; how many went (0: none waiting), None on failure."""
        start = self.spool.ack_position
        records, end = await asyncio.to_thread(self.spool.read, start, self.batch_size)
        if not records:
            return 0
        try:
            reply = await self._ingest(_requests(records), timeout=INGEST_DEADLINE_S)
        except aio.AioRpcError as exc:
            log.warning("features did not take the batch; it stays spooled",
                        extra={"code": exc.code().name, "detail": exc.details(),
                               "observations": len(records)})
            return None
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise  # stop(): the batch stays spooled for the next start
            # grpc.aio cancels a client-streaming call itself when writing a request fails
            # under it (features killed mid-batch) and raises CancelledError, not an RPC
            # error: it ended the forwarder silently once, the spool growing until the
            # gateway restarted (a CI run of 2026-12-05).
            log.warning("features did not take the batch; the call broke while sending it; "
                        "it stays spooled", extra={"observations": len(records)})
            return None
        for rejection in reply.rejected:
            # Refused for good: features keeps it whole in its dead-letter store (listed and
            # replayed with `edgeloop dead-letters`), so the spool may move past it.
            log.warning("features refused an observation; kept as a dead letter", extra={
                "observation_id": rejection.observation_id, "reason": rejection.reason,
                "dead_letter_id": rejection.dead_letter_id})
        await asyncio.to_thread(self.spool.ack, end)
        self.forwarded += len(records)
        self.forwarded_at, self.failing_since = time.time(), None
        log.debug("forwarded", extra={"stored": reply.stored, "duplicates": reply.duplicates})
        return len(records)


def _requests(records: list[bytes]) -> list[bytes]:
    """Serialized ``IngestRequest`` messages of at most MESSAGE_OBSERVATIONS observations."""
    return [_request_bytes(records[first:first + MESSAGE_OBSERVATIONS])
            for first in range(0, len(records), MESSAGE_OBSERVATIONS)]


def _request_bytes(records: list[bytes]) -> bytes:
    """The ``IngestRequest`` whose observations are ``records`` (each a serialized
    Observation), byte for byte what the message would serialize to."""
    parts: list[bytes] = []
    for record in records:
        parts += [_OBSERVATIONS_TAG, _varint(len(record)), record]
    return b"".join(parts)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_OBSERVATIONS_TAG = _varint(
    fs_pb2.IngestRequest.DESCRIPTOR.fields_by_name["observations"].number << 3 | 2)
"""Field ``observations``, wire type 2 (length-delimited)."""
