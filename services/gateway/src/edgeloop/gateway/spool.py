"""The durable, bounded observation spool: fsynced segment files and a persisted ack offset.

Layout of ``EDGELOOP_SPOOL_DIR``::

    0000000000000001.seg   records: [u32 length][u32 crc32][payload], appended in order
    0000000000000002.seg   a new segment starts once the current one exceeds segment_bytes
    ack                    {"segment": N, "offset": B}: everything before it reached features

Every batch is appended and fsynced before it counts as written; the ack file is
replaced atomically (write, fsync, rename) after features confirmed an Ingest. After a
crash the torn tail of the last segment (a batch cut by kill -9 mid-write) is cut off,
and reading resumes at the ack offset, so replay is in order and at least once; features
makes it exactly once by deduplicating on observation id.

Capacity (``max_bytes``) covers the unacknowledged bytes on disk plus bytes reserved by
frames being answered; :meth:`Spool.reserve` says no when it would be exceeded, and also
while the disk itself is full (an append failed; the next one that succeeds clears it). A
failed append is cut off the segment again, so the disk never keeps half a batch.
Methods doing I/O are blocking: call them from a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
SEGMENT_SUFFIX = ".seg"
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, order=True)
class Position:
    """A place in the spool: a segment number and a byte offset inside it."""

    segment: int
    offset: int


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _whole_records(path: Path) -> Iterator[int]:
    """The size (header included) of each whole record with a matching checksum at the
    start of segment ``path``, up to the first torn or damaged one."""
    with path.open("rb") as segment:
        while header := segment.read(_HEADER.size):
            if len(header) < _HEADER.size:
                return
            length, crc = _HEADER.unpack(header)
            payload = segment.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            yield _HEADER.size + length


def _valid_length(path: Path) -> int:
    """Bytes of ``path`` that hold whole records with matching checksums."""
    return sum(_whole_records(path))


def count_records(directory: str | Path) -> int:
    """Whole records in a spool's segment files, acknowledged ones included.

    Only reads, so it may run beside the gateway that writes them (tests, diagnostics).
    """
    segments = sorted(Path(directory).glob(f"*{SEGMENT_SUFFIX}"))
    return sum(1 for path in segments for _ in _whole_records(path))


class Spool:
    """An append-only, fsynced queue of records on disk with a bounded size."""

    def __init__(self, directory: str | Path, max_bytes: int,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ack_lock = threading.Lock()
        self._sizes: dict[int, int] = {}
        self._reserved = 0
        self._write_failed = False
        self._ack = Position(1, 0)
        self._open()

    # --- opening and recovery -------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ack = self._load_ack()
        segments = sorted(int(p.stem) for p in self.directory.glob(f"*{SEGMENT_SUFFIX}"))
        for number in segments:
            if number < self._ack.segment:
                self._path(number).unlink()  # fully acknowledged before a crash
            else:
                self._sizes[number] = self._path(number).stat().st_size
        if self._sizes:
            self._cut_torn_tail(max(self._sizes))
        else:
            self._sizes[self._ack.segment] = 0
            self._path(self._ack.segment).touch()
        log.info("spool opened", extra={"spool_dir": str(self.directory),
                                        "backlog_bytes": self.backlog_bytes})

    def _load_ack(self) -> Position:
        try:
            data = json.loads((self.directory / "ack").read_text())
            return Position(int(data["segment"]), int(data["offset"]))
        except FileNotFoundError:
            return Position(1, 0)

    def _cut_torn_tail(self, number: int) -> None:
        path = self._path(number)
        good = _valid_length(path)
        if good < self._sizes[number]:
            log.warning("cutting a torn spool tail", extra={
                "segment": path.name, "lost_bytes": self._sizes[number] - good})
            with path.open("r+b") as segment:
                segment.truncate(good)
                os.fsync(segment.fileno())
            self._sizes[number] = good

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:016d}{SEGMENT_SUFFIX}"

    # --- capacity -------------------------------------------------------------------

    @property
    def backlog_bytes(self) -> int:
        """Bytes on disk not yet acknowledged by features."""
        with self._lock:
            return self._backlog_locked()

    def _backlog_locked(self) -> int:
        return sum(self._sizes.values()) - self._ack.offset

    def reserve(self, nbytes: int) -> bool:
        """Reserve room for a record about to be appended; False when the spool is full
        (its capacity is used up, or the disk refused the last append)."""
        with self._lock:
            if self._write_failed or \
                    self._backlog_locked() + self._reserved + nbytes > self.max_bytes:
                return False
            self._reserved += nbytes
            return True

    def unreserve(self, nbytes: int) -> None:
        """Give back a reservation that will not be appended."""
        with self._lock:
            self._reserved = max(0, self._reserved - nbytes)

    # --- writing --------------------------------------------------------------------

    @property
    def write_failed(self) -> bool:
        """Whether the last append failed (e.g. the disk is full); new frames are refused."""
        return self._write_failed

    def append(self, records: list[bytes], reserved: int = 0) -> Position:
        """Append ``records`` in order, fsync, and return the end position (blocking).

        On an OSError (a full disk, an I/O error) nothing of the batch stays on disk,
        :meth:`reserve` refuses until an append succeeds, and the error is raised: the
        caller keeps the records and tries again.
        """
        data = b"".join(_HEADER.pack(len(r), zlib.crc32(r)) + r for r in records)
        with self._write_lock:
            try:
                number = self._segment_for_write()
                self._write(number, data)
            except OSError:
                if not self._write_failed:
                    log.error("spool append failed: refusing new frames until it works again",
                              exc_info=True, extra={"spool_dir": str(self.directory)})
                self._write_failed = True
                raise
            with self._lock:
                if self._write_failed:
                    log.warning("spool append works again: accepting frames",
                                extra={"spool_dir": str(self.directory)})
                self._write_failed = False
                self._sizes[number] += len(data)
                self._reserved = max(0, self._reserved - reserved)
                return Position(number, self._sizes[number])

    def _write(self, number: int, data: bytes) -> None:
        # Unbuffered, so a failure leaves nothing queued to be written later.
        fd = os.open(self._path(number), os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            # Part of the batch may have reached the file: cut it, or the next batch
            # would land behind bytes no reader can parse.
            os.ftruncate(fd, self._sizes[number])
            raise
        finally:
            os.close(fd)

    def _segment_for_write(self) -> int:
        number = max(self._sizes)
        if self._sizes[number] < self.segment_bytes:
            return number
        # A batch never spans segments, so only the last one can have a torn tail.
        self._path(number + 1).touch()
        _fsync_dir(self.directory)
        with self._lock:
            self._sizes[number + 1] = 0
        return number + 1

    # --- reading and acknowledging ----------------------------------------------------

    @property
    def ack_position(self) -> Position:
        """Everything before this position has reached features."""
        with self._lock:
            return self._ack

    def read(self, start: Position, max_records: int) -> tuple[list[bytes], Position]:
        """Up to ``max_records`` committed records from ``start`` and the position after them."""
        records: list[bytes] = []
        position = start
        while len(records) < max_records:
            with self._lock:
                end = self._sizes.get(position.segment)
                later = [n for n in self._sizes if n > position.segment]
            if end is None or position.offset >= end:
                if not later:
                    break
                position = Position(min(later), 0)
                continue
            position = self._read_segment(position, end, max_records - len(records), records)
        return records, position

    def _read_segment(self, position: Position, end: int, limit: int,
                      records: list[bytes]) -> Position:
        offset = position.offset
        with self._path(position.segment).open("rb") as segment:
            segment.seek(offset)
            while offset < end and limit > 0:
                length, _crc = _HEADER.unpack(segment.read(_HEADER.size))
                records.append(segment.read(length))
                offset += _HEADER.size + length
                limit -= 1
        return Position(position.segment, offset)

    def ack(self, position: Position) -> None:
        """Persist that everything before ``position`` reached features; drop spent segments.

        The ack never moves backwards (a late acknowledgement of an older batch is ignored).
        """
        with self._ack_lock:
            if position <= self.ack_position:
                return
            tmp = self.directory / "ack.tmp"
            with tmp.open("w") as out:
                json.dump({"segment": position.segment, "offset": position.offset}, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.directory / "ack")
            _fsync_dir(self.directory)
            self._forget_before(position)

    def _forget_before(self, position: Position) -> None:
        with self._lock:
            self._ack = position
            spent = [n for n in self._sizes if n < position.segment]
            for number in spent:
                del self._sizes[number]
        for number in spent:
            self._path(number).unlink(missing_ok=True)
