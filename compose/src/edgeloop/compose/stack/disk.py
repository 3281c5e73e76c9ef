"""The free disk space where the stack keeps its data, for `edgeloop status`.

It shows the room left on each filesystem holding the stack's data: the state folder's, and
PostgreSQL's when its data lives elsewhere (root, a private home folder). What "low" means
and why it matters: :mod:`edgeloop.platform.diskspace`.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeloop.compose.stack.state import StackState
from edgeloop.platform.diskspace import DiskSpace, measure


def disk_line(disk: DiskSpace) -> str:
    """``disk: 75.1 GB free of 252.0 GB (30 %) at <path>``, and what to do when low."""
    text = (f"disk:           {disk.free_bytes / 1e9:,.1f} GB free of "
            f"{disk.total_bytes / 1e9:,.1f} GB ({100 * disk.share_free:.0f} %) at {disk.path}")
    if disk.low:
        text += ("; LOW: once it is full, frames are answered but not recorded "
                 "(keep less: EDGELOOP_FEATURES__RETENTION_DAYS)")
    return text


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
        except OSError:  # not there (yet): nothing to say about it
            continue
        disk = measure(folder)
        if disk is None or device in seen:
            continue
        seen.add(device)
        disks.append(disk)
    return disks
