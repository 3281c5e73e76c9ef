"""The gateway's samples for dashboards: its spool, recording and robots, sent to features.

The status file (:mod:`edgeloop.gateway.status_file`) says how the gateway is now; Grafana's
Infrastructure dashboard and the console's fleet page draw how it was, from
``features.gateway_samples``: backlog and capacity, the recording state, robots and streams,
frames received and answered without a record a second, the room left on the spool's disk,
the streaming robots whose clock is off (and the furthest off's offset).
Every ``interval_s`` one of the status file's records becomes a sample (the same numbers,
taken once; the disk as the status file's previous write measured it), and a task sends
what is held with RecordGatewaySamples.

While features cannot be reached (the very time the spool fills) samples wait, the newest
``keep`` of them, and go in one call once it answers, so the dashboard shows the outage's
history afterwards. A stopping gateway sends its last sample (state ``stopped``) with a
short deadline. Held samples are also written to ``samples.pending`` in the spool folder
whenever a send fails and at stop (a few hundred KiB at most), so a gateway that is stopped,
crashes or is killed during an outage does not take the outage's history with it: the next
gateway started on that folder sends them first. Samples are for operators, not data: the
ones beyond ``keep`` are dropped with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import grpc
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc
from edgeloop.platform.gateway_status import RECORDING_STATES_BY_WORD, GatewayStatus
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0
STOP_SEND_TIMEOUT_S = 2.0
SEND_BATCH = 1000
"""Samples per call, so a long outage's backlog goes in a few calls."""
PENDING_FILE = "samples.pending"
"""The held samples in the spool folder: a serialized RecordGatewaySamplesRequest."""


@dataclass(frozen=True)
class Totals:
    """What the rates of the next sample are counted from: a time and the counts then."""

    at: float
    frames: int
    not_recorded: int


def sample_of(status: GatewayStatus, since: Totals) -> fs_pb2.GatewaySample:
    """The sample of one status record; its rates are over the time since ``since``."""
    elapsed = status.written_at - since.at

    def rate(now: int, then: int) -> float:
        return max(0, now - then) / elapsed if elapsed > 0 else 0.0

    streaming = [device for device in status.devices if device.streams]
    clocks_off = [device.clock_offset_s for device in streaming if device.clock_off]
    sampled_at = Timestamp()
    sampled_at.FromNanoseconds(round(status.written_at * 1e9))
    return fs_pb2.GatewaySample(
        gateway_id=status.gateway_id, sampled_at=sampled_at,
        backlog_bytes=status.backlog_bytes, max_bytes=status.max_bytes,
        recording=RECORDING_STATES_BY_WORD[status.recording_state(status.written_at)],
        robots_streaming=len(streaming), streams_open=sum(d.streams for d in streaming),
        frames_per_s=rate(status.frames_received, since.frames),
        not_recorded_per_s=rate(status.answered_not_recorded, since.not_recorded),
        disk_free_bytes=status.disk_free_bytes or 0, disk_total_bytes=status.disk_total_bytes or 0,
        robots_clock_off=len(clocks_off),
        worst_clock_offset_s=max(clocks_off, key=abs, default=0.0))


class GatewaySampler:
    """Turns a status record into a sample every ``interval_s`` and sends the held ones."""

    def __init__(self, channel: aio.Channel, interval_s: float, keep: int,
                 started_at: float, pending: Path | None = None) -> None:
        self._stub = feature_store_service_pb2_grpc.FeatureStoreServiceStub(channel)
        self.interval_s = interval_s
        self.held: deque[fs_pb2.GatewaySample] = deque(_read_pending(pending), maxlen=keep)
        """Samples taken and not yet stored by features, oldest first (those an earlier
        gateway left in ``pending`` first)."""
        self.pending = pending
        """Where held samples are kept over a stop or crash (None: in memory only)."""
        self._on_disk = bool(self.held)  # a pending file to remove once all are sent
        if self.held:
            log.info("gateway samples an earlier gateway held: sent first",
                     extra={"samples": len(self.held), "path": str(pending)})
        self.dropped = 0
        """Samples dropped since start: more than ``keep`` held at once."""
        self.started_at = started_at
        self._since = Totals(started_at, 0, 0)
        self._taken = asyncio.Event()
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def offer(self, status: GatewayStatus) -> None:
        """A status record was taken: it becomes a sample when ``interval_s`` has passed since
        the last one, or when it is the gateway's last (``stopped``)."""
        if not status.stopped and status.written_at - self._since.at < self.interval_s:
            return
        if len(self.held) == self.held.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("gateway samples dropped: features has not taken them",
                            extra={"dropped": self.dropped, "kept": len(self.held)})
        self.held.append(sample_of(status, self._since))
        self._since = Totals(status.written_at, status.frames_received,
                              status.answered_not_recorded)
        self._taken.set()

    def start(self) -> None:
        """Send samples as they are taken, until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="gateway-samples")

    async def stop(self) -> None:
        """Stop sending; one last call (short deadline) for what is held, the last sample
        (offered by the status writer's final record) included."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not await self._send_held(STOP_SEND_TIMEOUT_S):
            log.warning("gateway samples not sent before stop: kept for the next start",
                        extra={"samples": len(self.held), "path": str(self.pending)})

    async def _run(self) -> None:
        while True:
            await self._taken.wait()
            self._taken.clear()
            if not await self._send_held(SEND_TIMEOUT_S):
                await asyncio.sleep(self.interval_s)  # features is away: try with the next

    async def _send_held(self, timeout_s: float) -> bool:
        """Send the held samples in batches; True when none is left."""
        while self.held:
            batch = list(self.held)[:SEND_BATCH]
            try:
                await self._stub.RecordGatewaySamples(
                    fs_pb2.RecordGatewaySamplesRequest(samples=batch), timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                if not self._failing:
                    log.warning("gateway samples wait: features did not take them", extra={
                        "code": exc.code().name, "details": exc.details(),
                        "samples": len(self.held)})
                self._failing = True
                self._keep_pending()
                return False
            # Samples taken during the call were appended behind the batch, and a full deque
            # dropped from its front: what is left of the batch is the deque's head.
            batch_ids = {id(sample) for sample in batch}
            while self.held and id(self.held[0]) in batch_ids:
                self.held.popleft()
            if self._failing:
                log.info("gateway samples sent again", extra={"samples": len(batch)})
            self._failing = False
        self._keep_pending()
        return True

    def _keep_pending(self) -> None:
        """Write the held samples to ``pending`` (remove it when none is held)."""
        if self.pending is None:
            return
        try:
            if not self.held:
                if self._on_disk:  # not a file system call after every send
                    self.pending.unlink(missing_ok=True)
                    self._on_disk = False
                return
            data = fs_pb2.RecordGatewaySamplesRequest(samples=self.held).SerializeToString()
            partial = self.pending.with_name(self.pending.name + ".tmp")
            partial.write_bytes(data)
            os.replace(partial, self.pending)  # a crash mid-write leaves the older file whole
            self._on_disk = True
        except OSError as exc:
            log.warning("gateway samples not kept on disk: %s", exc,
                        extra={"path": str(self.pending), "samples": len(self.held)})


def _read_pending(path: Path | None) -> list[fs_pb2.GatewaySample]:
    """The samples an earlier gateway kept in ``path`` (none if it is missing or unreadable)."""
    if path is None:
        return []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("gateway samples kept on disk not read: %s", exc, extra={"path": str(path)})
        return []
    try:
        return list(fs_pb2.RecordGatewaySamplesRequest.FromString(data).samples)
    except DecodeError as exc:
        log.warning("gateway samples kept on disk do not parse; dropped: %s", exc,
                    extra={"path": str(path)})
        return []
