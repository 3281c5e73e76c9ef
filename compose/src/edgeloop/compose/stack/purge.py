"""Starting over: delete everything a stopped stack keeps, in its state folder and outside.

`edgeloop down --purge` calls :func:`purge` once every part has stopped. Deleting the state
folder by hand is not enough where PostgreSQL's data lives outside it (run as root with the
state in a private home folder): a new stack of that folder would have taken the old
database as its own, whose registry names model versions of an MLflow store that went with
the folder. :func:`orphaned_postgres_data` lets `edgeloop up` refuse that instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from edgeloop.compose.stack.state import SECRETS_FILE, StackState
from edgeloop.platform.pgcluster import PostgresCluster
from edgeloop.platform.stackfolders import outside_folders, outside_postgres_data


def orphaned_postgres_data(state_dir: Path) -> Path | None:
    """PostgreSQL data outside ``state_dir`` left by an earlier stack of that folder which
    has since been deleted; None when there is none or the folder is still the stack's (a
    folder without the secrets `up` writes before PostgreSQL starts has not held one since)."""
    if (state_dir / SECRETS_FILE).exists():
        return None
    data = outside_postgres_data(state_dir)
    return data if data.exists() else None


def folder_bytes(folder: Path) -> int:
    """The size of the files under ``folder`` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while we walk (a log rotated, a Ray socket)
                continue
    return total


def _recorded_outside(state_dir: Path) -> list[Path]:
    """The folder holding the PostgreSQL data the stack recorded, when outside the state
    folder and not where :func:`outside_postgres_data` says (an earlier release kept it in the
    temporary folder)."""
    recorded = StackState.load(state_dir).postgres_data_dir
    if not recorded or Path(recorded).is_relative_to(state_dir.resolve()) or \
            Path(recorded) == outside_postgres_data(state_dir):
        return []
    return [Path(recorded).parent]


def stack_folders(state_dir: Path) -> list[Path]:
    """Every folder :func:`purge` deletes, existing or not: the state folder and the stack's
    folders outside it (also where an earlier release kept PostgreSQL's data)."""
    return [*_recorded_outside(state_dir), state_dir.resolve(), *outside_folders(state_dir)]


def purge(state_dir: Path, progress: Callable[[str], None]) -> list[Path]:
    """Delete ``state_dir`` and the stack's folders outside it; returns the folders deleted.

    Call it once the stack has stopped. A PostgreSQL still running on data outside (its
    state folder deleted while the stack ran, so `down` could not find it) is stopped first.
    """
    data = outside_postgres_data(state_dir)
    if data.exists():
        cluster = PostgresCluster(data_dir=data, port=0)
        if cluster.is_running():
            progress(f"postgres: stopping the server on {data}")
            cluster.stop()
    removed = []
    for folder in stack_folders(state_dir):
        if not folder.exists():
            continue
        size = folder_bytes(folder)
        shutil.rmtree(folder)
        progress(f"deleted {folder} ({size / 1e6:,.1f} MB)")
        removed.append(folder)
    return removed
