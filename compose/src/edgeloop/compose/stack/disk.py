"""The free disk space where the stack keeps its data, for `edgeloop status`.

A fleet's images, rows and spools fill a disk steadily (100 robots at 4 fps: ~35 million
frames a day); when it is full, the gateways answer without recording. `status` shows the
room left on each filesystem holding the stack's data: the state folder's, and PostgreSQL's
when its data lives elsewhere (root, a private home folder).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeloop.compose.stack.state import StackState

LOW_FRACTION = 0.10
"""Below this share of a filesystem free, `status` calls the room low."""


@dataclass(frozen=True)
class DiskSpace:
    """One filesystem holding the stack's data, as seen through ``path``."""

    path: Path
    free_bytes: int
    total_bytes: int

    @property
    def low(self) -> bool:
        return self.free_bytes < LOW_FRACTION * self.total_bytes

    def line(self) -> str:
        """``disk: 75.1 GB free of 252.0 GB (30 %) at <path>``, and what to do when low."""
        share = 100 * self.free_bytes / self.total_bytes if self.total_bytes else 0.0
        text = (f"disk:           {self.free_bytes / 1e9:,.1f} GB free of "
                f"{self.total_bytes / 1e9:,.1f} GB ({share:.0f} %) at {self.path}")
        if self.low:
            text += ("; LOW: once it is full, frames are answered but not recorded "
                     "(keep less: EDGELOOP_FEATURES__RETENTION_DAYS)")
        return text

    def as_json(self) -> dict[str, object]:
        return {"path": str(self.path), "free_bytes": self.free_bytes,
                "total_bytes": self.total_bytes, "low": self.low}


def stack_disks(state_dir: Path) -> list[DiskSpace]:
    """The filesystems of the state folder and of PostgreSQL's recorded data, once each."""
    folders = [state_dir.resolve()]
    recorded = StackState.load(state_dir).postgres_data_dir
    if recorded:
        folders.append(Path(recorded))
    seen: set[int] = set()
    disks = []
    for folder in folders:
        try:
            device = os.stat(folder).st_dev
            usage = shutil.disk_usage(folder)
        except OSError:  # not there (yet): nothing to say about it
            continue
        if device in seen:
            continue
        seen.add(device)
        disks.append(DiskSpace(folder, usage.free, usage.total))
    return disks
