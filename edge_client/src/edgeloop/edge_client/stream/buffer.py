"""The bounded on-disk buffer of labelled frames that could not be delivered yet.

Frames are kept in a SQLite database (one row per frame, keyed by session and seq) so
they survive a crash of the robot program. The buffer is bounded by frame count and by
bytes; when full, the oldest frames are evicted first (and counted, and logged), so the
robot never fills its SD card.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from edgeloop.contracts.edge.v1 import edge_pb2

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    frame BLOB NOT NULL,
    PRIMARY KEY (session, seq)
)
"""


class OfflineBuffer:
    """Labelled frames waiting for delivery, durable on disk and bounded."""

    def __init__(self, path: Path, max_frames: int = 5000,
                 max_bytes: int = 256 * 1024 * 1024) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("buffer limits must be positive")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def put(self, session: str, frame: edge_pb2.Frame) -> int:
        """Store ``frame`` (replacing one with the same seq); returns how many were evicted."""
        data = frame.SerializeToString()
        self._db.execute("INSERT OR REPLACE INTO frames VALUES (?, ?, ?, ?)",
                         (session, frame.seq, len(data), data))
        return self._evict()

    def get(self, session: str, seq: int) -> edge_pb2.Frame | None:
        """The stored frame, or None if it was delivered or evicted."""
        row = self._db.execute("SELECT frame FROM frames WHERE session = ? AND seq = ?",
                               (session, seq)).fetchone()
        return edge_pb2.Frame.FromString(row[0]) if row else None

    def delete(self, session: str, seq: int) -> None:
        """Forget a delivered frame."""
        self._db.execute("DELETE FROM frames WHERE session = ? AND seq = ?", (session, seq))

    def seqs(self, session: str) -> list[int]:
        """Sequence numbers stored for ``session``, ascending."""
        rows = self._db.execute("SELECT seq FROM frames WHERE session = ? ORDER BY seq", (session,))
        return [r[0] for r in rows]

    def __contains__(self, key: tuple[str, int]) -> bool:
        row = self._db.execute("SELECT 1 FROM frames WHERE session = ? AND seq = ?", key).fetchone()
        return row is not None

    def count(self, session: str | None = None) -> int:
        """Frames stored (for one session, or all)."""
        if session is None:
            return int(self._db.execute("SELECT count(*) FROM frames").fetchone()[0])
        return int(self._db.execute("SELECT count(*) FROM frames WHERE session = ?",
                                    (session,)).fetchone()[0])

    def max_seq(self, session: str) -> int:
        """The highest seq stored for ``session`` (0 when none); resumed sessions go on from it."""
        row = self._db.execute("SELECT max(seq) FROM frames WHERE session = ?",
                               (session,)).fetchone()
        return int(row[0] or 0)

    def sessions(self) -> list[str]:
        """Sessions with frames still waiting."""
        rows = self._db.execute("SELECT DISTINCT session FROM frames ORDER BY session")
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close the database; stored frames stay on disk."""
        self._db.close()

    def _evict(self) -> int:
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM frames").fetchone()
        evicted = 0
        while count > self.max_frames or (size > self.max_bytes and count > 1):
            session, seq, nbytes = self._db.execute(
                "SELECT session, seq, size FROM frames ORDER BY rowid LIMIT 1").fetchone()
            self._db.execute("DELETE FROM frames WHERE session = ? AND seq = ?", (session, seq))
            log.warning("offline buffer full: evicted the oldest labelled frame",
                        extra={"session": session, "seq": seq, "max_frames": self.max_frames})
            count, size, evicted = count - 1, size - nbytes, evicted + 1
        return evicted
