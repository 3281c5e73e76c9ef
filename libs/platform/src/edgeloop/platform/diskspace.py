"""The room left on a filesystem, where a full disk would stop the recording.

A fleet's images, rows and spools fill a disk steadily (100 robots at 4 fps: ~35 million
frames a day); once it is full, the gateways answer robots without recording their frames.
`edgeloop status` shows the room on each filesystem holding the stack's data, and each
gateway writes its spool's into its status file, which the console's fleet page shows:
an operator sees it low before anything goes unrecorded.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

LOW_FRACTION = 0.10
"""Below this share of a filesystem free, the room is called low."""


@dataclass(frozen=True)
class DiskSpace:
    """One filesystem, as seen through ``path``."""

    path: Path
    free_bytes: int
    total_bytes: int

    @property
    def share_free(self) -> float:
        """The free share of the filesystem, 0 to 1."""
        return self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def low(self) -> bool:
        return is_low(self.free_bytes, self.total_bytes)

    def as_json(self) -> dict[str, object]:
        return {"path": str(self.path), "free_bytes": self.free_bytes,
                "total_bytes": self.total_bytes, "low": self.low}


def is_low(free_bytes: int, total_bytes: int) -> bool:
    """Less than :data:`LOW_FRACTION` of the filesystem free."""
    return free_bytes < LOW_FRACTION * total_bytes


def measure(path: Path) -> DiskSpace | None:
    """The filesystem holding ``path`` now; None when ``path`` cannot be read (not there)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return DiskSpace(path, usage.free, usage.total)
