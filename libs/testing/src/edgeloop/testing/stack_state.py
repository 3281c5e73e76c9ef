"""Cleaning up after a test's local stack: what it kept outside its state folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeloop.platform.stackfolders import outside_folders


def discard_stack_leftovers(state_dir: Path) -> None:
    """Remove what a stack under ``state_dir`` kept outside that folder; call it once the
    stack is stopped.

    The PostgreSQL data: run as root, a stack whose state folder the postgres user cannot
    reach (pytest's temporary folders are private) keeps its cluster's data under
    /var/lib/edgeloop (``choose_data_dir``), ~70 MB. The Ray head's temp folder
    (``stack_temp_dir``: session logs, ~2 MB a start). The test's own clean-up sees neither.
    """
    for folder in outside_folders(state_dir):
        shutil.rmtree(folder, ignore_errors=True)
