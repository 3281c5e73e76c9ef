"""Observations: what the gateway records about every frame, and their way into the spool.

The stream reserves spool room for a frame *before* answering it (so a full spool is
refused per frame with SPOOL_FULL instead of growing), answers, and then hands the
observation to the :class:`Recorder`, which appends whatever has queued up as one
fsynced batch (group commit) off the event loop. Each submission returns a future that
says when (and whether) the observation is durable, so the stream can tell the robot
which frames it may forget (``Recorded``): the answer itself never waits for the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import uuid6
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.gateway.spool import Spool
from google.protobuf.timestamp_pb2 import Timestamp

log = logging.getLogger(__name__)

Durable = asyncio.Future[bool]
"""True once an observation is fsynced to the spool; False if it will not be recorded."""
RECORD_OVERHEAD_BYTES = 1024
"""Room reserved per observation beyond its JPEG (ids, names, numbers, spool header)."""


def new_observation_id() -> str:
    """A random UUIDv7: time-ordered, so ids sort by time and index well."""
    return str(uuid6.uuid7())


def observation_id_for(device_id: str, session_id: str, frame: edge_pb2.Frame) -> str:
    """The UUIDv7 of a frame, the same every time the same frame arrives.

    A robot resends a frame (same session, seq and capture time) when its answer was
    lost in transit; deriving the id from those makes the feature store's idempotency
    on observation id catch the copy, so a frame is recorded once end to end. The
    48-bit timestamp is the capture time in ms (ids still sort by time); the random
    bits come from a SHA-256 of the frame's identity. Without a capture time there is
    nothing stable to derive from, and the id is random.
    """
    captured_ns = frame.captured_at.ToNanoseconds() if frame.HasField("captured_at") else 0
    if captured_ns <= 0:
        return new_observation_id()
    identity = f"{device_id}\0{session_id}\0{frame.seq}\0{captured_ns}".encode()
    rand = int.from_bytes(hashlib.sha256(identity).digest()[:10], "big")  # 80 bits, 74 used
    millis = (captured_ns // 1_000_000) & ((1 << 48) - 1)
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62 & 0xFFF) << 64) | (0b10 << 62) \
        | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def reservation_bytes(jpeg_size: int) -> int:
    """Spool room to reserve for an observation carrying a JPEG of ``jpeg_size`` bytes."""
    return jpeg_size + RECORD_OVERHEAD_BYTES


@dataclass
class FrameOutcome:
    """What routing and the model made of one frame."""

    deployment: str
    data_group: str
    arm: str
    model_name: str = ""
    model_version: str = ""
    prediction_mm: float | None = None
    source: int = observation_pb2.PredictionSource.PREDICTION_SOURCE_SERVER
    """Where prediction_mm was computed: the model host (server) or the robot (device)."""
    shadow: list[observation_pb2.ArmPrediction] = field(default_factory=list)
    device_quantized: bool = False
    """The robot's prediction came from the version's quantized twin."""


@dataclass(frozen=True)
class FrameContext:
    """Who sent a frame and when it arrived."""

    device_id: str
    session_id: str
    received_at: datetime
    trace_id: str
    traceparent: str


def build_observation(observation_id: str, frame: edge_pb2.Frame, ctx: FrameContext,
                      outcome: FrameOutcome, latency_ms: float) -> observation_pb2.Observation:
    """The observation of ``frame``: every field of features.v1.Observation the gateway knows."""
    received = Timestamp()
    received.FromDatetime(ctx.received_at)
    obs = observation_pb2.Observation(
        observation_id=observation_id, received_at=received, device_id=ctx.device_id,
        session_id=ctx.session_id, seq=frame.seq, deployment=outcome.deployment,
        data_group=outcome.data_group, model_name=outcome.model_name,
        model_version=outcome.model_version, arm=outcome.arm, latency_ms=latency_ms,
        trace_id=ctx.trace_id, traceparent=ctx.traceparent, late=frame.late, jpeg=frame.jpeg,
        shadow_predictions=outcome.shadow,
    )
    # A device without a clock sync may send no capture time; the arrival time is the
    # best estimate then, and features needs a time for its hypertable.
    obs.time.CopyFrom(frame.captured_at if frame.HasField("captured_at") else received)
    if outcome.prediction_mm is not None:
        obs.prediction_mm = outcome.prediction_mm
        obs.prediction_source = outcome.source
        obs.device_quantized = outcome.device_quantized
    if frame.HasField("sensor_mm"):
        obs.sensor_mm = frame.sensor_mm
        if outcome.prediction_mm is not None:
            obs.error_mm = outcome.prediction_mm - frame.sensor_mm
    return obs


_Pending = tuple[bytes, int, Durable]
"""A serialized observation, its spool reservation, and the future told when it is durable."""


class Recorder:
    """Appends observations to the spool in group commits, then wakes the forwarder.

    An observation that finds the writer idle waits ``commit_wait_s`` for company before
    the commit: an fsync costs about as much CPU for a dozen records as for one (0.18 ms per
    record one at a time, 0.06 at eight, on the dev VM's ext4), and at a fleet's rate the
    event loop's turns hand over one or two at a time. Answers never wait for a commit;
    only ``Recorded`` messages come that much later.
    """

    def __init__(self, spool: Spool, on_written: Callable[[], None],
                 max_batch: int = 512, commit_wait_s: float = 0.0) -> None:
        self.spool = spool
        self.on_written = on_written
        self.max_batch = max_batch
        self.commit_wait_s = commit_wait_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._gathering: list[_Pending] = []
        """Taken from the queue, waiting for company: :meth:`drain` commits them too."""
        self._task: asyncio.Task[None] | None = None
        self._completing: set[asyncio.Future[None]] = set()

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="spool-writer")

    def submit(self, observation: observation_pb2.Observation, reserved: int) -> Durable:
        """Queue ``observation`` (whose spool room is already reserved) for the next commit.

        The returned future becomes True once the observation is fsynced to the spool.
        """
        durable: Durable = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((observation.SerializeToString(), reserved, durable))
        return durable

    def submit_when_ready(self, pending: Awaitable[observation_pb2.Observation],
                          reserved: int) -> Durable:
        """Queue an observation still being completed (e.g. awaiting a shadow prediction).

        The returned future becomes True once it is durable, False if it could not be
        completed (and is not recorded).
        """
        durable: Durable = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._submit_later(pending, reserved, durable))
        self._completing.add(task)
        task.add_done_callback(self._completing.discard)
        return durable

    async def _submit_later(self, pending: Awaitable[observation_pb2.Observation],
                            reserved: int, durable: Durable) -> None:
        try:
            observation = await pending
        except Exception:
            self.spool.unreserve(reserved)
            log.exception("observation could not be completed; not recorded")
            _settle(durable, False)
            return
        committed = self.submit(observation, reserved)
        committed.add_done_callback(lambda done: _settle(durable, done.result()))

    async def _run(self) -> None:
        while True:
            self._gathering = [await self._queue.get()]
            if self.commit_wait_s > 0 and self._queue.empty():
                # Records that queued during the last commit have waited already.
                await self._wait_for_company()
            batch, self._gathering = self._gathering, []
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    async def _wait_for_company(self) -> None:
        await asyncio.sleep(self.commit_wait_s)

    async def _commit(self, batch: list[_Pending],
                      deadline: float | None = None) -> bool:
        """Append ``batch``, retrying while the disk refuses; False if ``deadline`` (event
        loop time) passed first."""
        records = [record for record, _, _ in batch]
        reserved = sum(size for _, size, _ in batch)
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.to_thread(self.spool.append, records, reserved)
                break
            except OSError:
                # A disk error must not drop observations that were already answered:
                # keep them in memory and retry; the spool refuses new frames meanwhile.
                log.warning("spool append failed; retrying in 1 s",
                            extra={"records": len(records)})
                if deadline is not None and loop.time() + 1.0 > deadline:
                    return False
                await asyncio.sleep(1.0)
        for _, _, durable in batch:
            _settle(durable, True)
        self.on_written()
        return True

    async def drain(self, timeout_s: float | None = None) -> None:
        """Commit everything queued (at shutdown), giving up after ``timeout_s`` if the disk
        keeps refusing: robots that asked for Recorded messages still hold those frames."""
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        while self._gathering or not self._queue.empty():
            batch, self._gathering = self._gathering, []
            batch += [self._queue.get_nowait()
                      for _ in range(min(self._queue.qsize(), self.max_batch - len(batch)))]
            if not await self._commit(batch, deadline):
                lost = len(batch) + self._queue.qsize()
                log.error("stopping with observations the disk refused; not recorded here "
                          "(robots resend the labelled ones they were not told are recorded)",
                          extra={"records": lost})
                return

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop the writer task after committing what is queued (see :meth:`drain`)."""
        if self._completing:
            await asyncio.gather(*self._completing, return_exceptions=True)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.drain(timeout_s)


def _settle(durable: Durable, value: bool) -> None:
    # A future whose stream is gone may have been cancelled: nobody waits for it then.
    if not durable.done():
        durable.set_result(value)
