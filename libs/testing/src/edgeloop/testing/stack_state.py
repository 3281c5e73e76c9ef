"""Cleaning up after a test's local stack: what it kept outside its state folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeloop.platform.pgcluster import choose_data_dir
from edgeloop.platform.rayhead import stack_temp_dir


def discard_stack_leftovers(state_dir: Path) -> None:
    """Remove what a stack under ``state_dir`` kept outside that folder; call it once the
    stack is stopped.

    The PostgreSQL data: run as root, a stack whose state folder the postgres user cannot
    reach (pytest's temporary folders are private) keeps its cluster's data in a shared
    temporary folder (``choose_data_dir``), ~70 MB. The Ray head's temp folder
    (``stack_temp_dir``: session logs, ~2 MB a start). The test's own clean-up sees neither.
    """
    data = choose_data_dir(state_dir / "postgres")
    if not data.is_relative_to(state_dir.resolve()):
        shutil.rmtree(data.parent, ignore_errors=True)
    shutil.rmtree(stack_temp_dir(state_dir), ignore_errors=True)
