"""The folders a local stack (`edgeloop up`) keeps outside its state folder.

Two: PostgreSQL's data when the postgres user cannot reach the state folder (run as root
with the state in a private home folder: ``choose_data_dir``, under /var/lib/edgeloop), and
the Ray head's temp folder
(``stack_temp_dir``: Unix socket paths must stay short). Deleting the state folder leaves
them behind; ``edgeloop down --purge`` and the test stacks' clean-up remove them from here.
Both are named after the state folder's path alone, so they are found without asking
(or creating) the state folder.
"""

from __future__ import annotations

from pathlib import Path

from edgeloop.platform.pgcluster import outside_data_dir
from edgeloop.platform.rayhead import stack_temp_dir


def outside_postgres_data(state_dir: Path) -> Path:
    """Where the stack in ``state_dir`` keeps PostgreSQL's data when the postgres user
    cannot reach ``state_dir`` (the folder exists only then)."""
    return outside_data_dir(state_dir / "postgres")


def outside_folders(state_dir: Path) -> list[Path]:
    """The stack's folders outside ``state_dir``, existing or not: the one holding
    PostgreSQL's data when that is outside, and the Ray head's temp folder."""
    return [outside_postgres_data(state_dir).parent, stack_temp_dir(state_dir)]
