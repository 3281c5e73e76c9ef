"""The gateway's state for operators: ``status.json`` in the spool folder, rewritten every few s.

A fleet's overload shows at the gateway first: the spool fills while features catches up,
and once it is full live frames are answered without a record. Operators see it in this
file (``edgeloop status`` and the console's fleet page read it; anyone can ``cat`` it)
rather than only in the log, beside the versions the gateway serves and the runtime each
runs on, and each device's contact (:mod:`edgeloop.gateway.contacts`). Its format, and why
a file: :mod:`edgeloop.platform.gateway_status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from edgeloop.gateway.deployments import DeploymentState
from edgeloop.gateway.forwarder import Forwarder
from edgeloop.gateway.frames import UnrecordedAnswers
from edgeloop.gateway.hosts.base import ModelHost
from edgeloop.gateway.spool import Spool
from edgeloop.platform.diskspace import DiskSpace, measure
from edgeloop.platform.gateway_status import (
    STATUS_FILE,
    DeviceContact,
    GatewayStatus,
    ServedVersion,
    write_status,
)

log = logging.getLogger(__name__)


def gateway_status(gateway_id: str, spool: Spool, unrecorded: UnrecordedAnswers,
                   forwarder: Forwarder, serving: tuple[ServedVersion, ...], interval_s: float,
                   stopped: bool = False, devices: tuple[DeviceContact, ...] = (),
                   frames_received: int = 0) -> GatewayStatus:
    """The status record as it is now."""
    return GatewayStatus(gateway_id=gateway_id, pid=os.getpid(), written_at=time.time(),
                         stopped=stopped, backlog_bytes=spool.backlog_bytes,
                         max_bytes=spool.max_bytes, disk_refused=spool.write_failed,
                         not_recorded_since=unrecorded.since,
                         answered_not_recorded=unrecorded.total,
                         forwarded_at=forwarder.forwarded_at,
                         forward_failing_since=forwarder.failing_since, interval_s=interval_s,
                         serving=serving, devices=devices, frames_received=frames_received)


def served_versions(state: DeploymentState, host: ModelHost) -> tuple[ServedVersion, ...]:
    """Every version a deployment names, with the runtime the host runs it on now."""
    runtime_of = getattr(host, "runtime", None)  # only the embedded host picks a runtime
    served = []
    for key in sorted(state.model_keys(), key=lambda k: (k.model_name, k.version, k.path)):
        runtime = runtime_of(key) if runtime_of else "tfserving"
        served.append(ServedVersion(key.model_name, key.version, runtime or "loading"))
    return tuple(dict.fromkeys(served))  # a version named under two paths: once


class StatusWriter:
    """Writes the status file every ``interval_s`` while the gateway runs, and once at stop."""

    def __init__(self, directory: Path, current: Callable[[bool], GatewayStatus],
                 interval_s: float,
                 listener: Callable[[GatewayStatus], None] | None = None) -> None:
        self.directory = directory
        self._current = current
        self.interval_s = interval_s
        self._listener = listener
        """Given every record as it is taken, on the event loop (the dashboards' sampler)."""
        self._disk: DiskSpace | None = None
        """The spool's filesystem as last measured (by the previous write)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Write it now (before the gateway reports SERVING: whoever sees the gateway up finds
        the file) and then every interval."""
        self._disk = measure(self.directory)  # not serving yet: the loop may wait for it
        self._write_file(self._take(stopped=False))
        self._task = asyncio.create_task(self._run(), name="status-file")

    async def stop(self) -> None:
        """Stop rewriting it and write the final state (what stays spooled for next start)."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._write(stopped=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._write(stopped=False)

    async def _write(self, stopped: bool) -> None:
        # the record is taken on the event loop, which owns what it reads; the disk in a thread
        await asyncio.to_thread(self._write_now, self._take(stopped))

    def _take(self, stopped: bool) -> GatewayStatus:
        status = self._current(stopped)
        if self._listener is not None:
            # the listener's record carries the disk as the previous write measured it (one
            # interval old at most): measuring here would touch the filesystem on the loop
            self._listener(_with_disk(status, self._disk))
        return status

    def _write_now(self, status: GatewayStatus) -> None:
        # measured where the file is written, off the event loop once the gateway serves: a
        # stuck filesystem must not stall the answers
        self._disk = measure(self.directory)
        self._write_file(status)

    def _write_file(self, status: GatewayStatus) -> None:
        """Write ``status`` with the disk as last measured."""
        try:
            write_status(self.directory, _with_disk(status, self._disk))
        except OSError as exc:  # a full disk must not stop the gateway; its log says so
            log.warning("could not write the spool status file", extra={
                "path": str(self.directory / STATUS_FILE), "error": str(exc)})


def _with_disk(status: GatewayStatus, disk: DiskSpace | None) -> GatewayStatus:
    """``status`` with the spool filesystem's free and total bytes (unchanged when unknown)."""
    if disk is None:
        return status
    return dataclasses.replace(status, disk_free_bytes=disk.free_bytes,
                               disk_total_bytes=disk.total_bytes)
