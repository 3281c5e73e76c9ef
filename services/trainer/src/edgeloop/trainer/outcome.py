"""What a finished sweep hands to its registration: the best trial and its weights' file.

Kept apart from :mod:`~edgeloop.trainer.tune` (which imports Ray Tune) because the
registration's child process unpickles a :class:`TuneOutcome`: the class's module is what
the child imports, and it should not pull Ray, pandas and their ~120 MiB into a process
that only exports and measures a model (:mod:`~edgeloop.trainer.holdout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.weights.h5"
"""The weights' file in a trial checkpoint (and in a version's logged training weights)."""


@dataclass(frozen=True)
class TuneOutcome:
    """The best trial of a finished sweep."""

    trial_id: str
    config: dict[str, Any]
    val_mae_mm: float
    checkpoint_dir: Path
