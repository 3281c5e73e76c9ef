"""Cleaning up after a test's local stack."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeloop.platform.pgcluster import choose_data_dir


def discard_postgres_data(state_dir: Path) -> None:
    """Remove the PostgreSQL data a stack under ``state_dir`` kept outside that folder.

    Run as root, a stack whose state folder the postgres user cannot reach (pytest's
    temporary folders are private) keeps its cluster's data in a shared temporary folder
    (``choose_data_dir``): the test's own clean-up never sees it, so every run left ~70 MB
    behind. Call it once the cluster is stopped.
    """
    data = choose_data_dir(state_dir / "postgres")
    if not data.is_relative_to(state_dir.resolve()):
        shutil.rmtree(data.parent, ignore_errors=True)
