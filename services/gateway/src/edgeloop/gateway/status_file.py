"""The spool's state for operators: ``status.json`` in the spool folder, rewritten every few s.

A fleet's overload shows at the gateway first: the spool fills while features catches up,
and once it is full live frames are answered without a record. Operators see it here
(``edgeloop status`` reads it; anyone can ``cat`` it) rather than only in the log. A file,
not an RPC: several gateway processes may share one port (``EDGELOOP_REUSE_PORT``), and a
call would reach one of them at random, while each process writes its own spool's file.

Fields (``version`` 1; times are Unix seconds, null when it has not happened)::

    gateway_id, pid, written_at, stopped (true once the gateway has stopped)
    backlog_bytes, max_bytes    bytes waiting for features, and the spool's capacity
    disk_refused                the last append failed (the disk is full)
    not_recorded_since          live frames are answered without a record since then
    answered_not_recorded       such answers since the gateway started
    forwarded_at                features last confirmed a batch
    forward_failing_since       calls to features have failed since then

The file is replaced atomically (written beside, then renamed), so a reader never sees half;
on a full disk it is overwritten in place instead (a reader may then catch a torn record and
should read again).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeloop.gateway.forwarder import Forwarder
from edgeloop.gateway.frames import UnrecordedAnswers
from edgeloop.gateway.spool import Spool

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
STATUS_VERSION = 1
PADDED_BYTES = 1024
"""The file's size: whitespace after the JSON, so later, longer records fit in place."""


def spool_status(gateway_id: str, spool: Spool, unrecorded: UnrecordedAnswers,
                 forwarder: Forwarder, stopped: bool = False) -> dict[str, Any]:
    """The status record as it is now."""
    return {"version": STATUS_VERSION, "gateway_id": gateway_id, "pid": os.getpid(),
            "written_at": time.time(), "stopped": stopped,
            "backlog_bytes": spool.backlog_bytes, "max_bytes": spool.max_bytes,
            "disk_refused": spool.write_failed,
            "not_recorded_since": unrecorded.since,
            "answered_not_recorded": unrecorded.total,
            "forwarded_at": forwarder.forwarded_at,
            "forward_failing_since": forwarder.failing_since}


def write_status(directory: Path, status: dict[str, Any]) -> None:
    """Replace ``directory``/status.json with ``status``; on a full disk, overwrite it in place.

    No fsync: it is rewritten soon, and a crash that loses it loses nothing a restart does not
    write again. The text is padded to :data:`PADDED_BYTES` so that it fits in the blocks the
    file already holds: when the spool's disk is full (when an operator most needs to see it)
    a new file cannot be written, but the old one can be overwritten.
    """
    text = json.dumps(status, indent=1).encode()
    text += b" " * (PADDED_BYTES - len(text) - 1) + b"\n"
    path = directory / STATUS_FILE
    partial = directory / f".{STATUS_FILE}.{os.getpid()}"
    try:
        partial.write_bytes(text)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno != errno.ENOSPC:
            raise
        _overwrite(path, text)


def _overwrite(path: Path, text: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)  # FileNotFoundError: nothing to overwrite yet
    try:
        if os.fstat(fd).st_size < len(text):
            raise OSError(errno.ENOSPC, "no room to write the status", str(path))
        os.pwrite(fd, text, 0)
    finally:
        os.close(fd)


class StatusWriter:
    """Writes the status file every ``interval_s`` while the gateway runs, and once at stop."""

    def __init__(self, directory: Path, current: Callable[[bool], dict[str, Any]],
                 interval_s: float) -> None:
        self.directory = directory
        self._current = current
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Write it now (before the gateway reports SERVING: whoever sees the gateway up finds
        the file) and then every interval."""
        try:
            write_status(self.directory, self._current(False))
        except OSError as exc:
            _cannot_write(self.directory, exc)
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
        try:
            await asyncio.to_thread(write_status, self.directory, self._current(stopped))
        except OSError as exc:
            _cannot_write(self.directory, exc)


def _cannot_write(directory: Path, exc: OSError) -> None:
    # a full disk must not stop the gateway; its log says so, and so does the spool's
    log.warning("could not write the spool status file", extra={
        "path": str(directory / STATUS_FILE), "error": str(exc)})
