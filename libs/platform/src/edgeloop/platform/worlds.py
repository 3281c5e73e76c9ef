"""How a world is named in a model version's metrics.

A world is the data of one drift period (the trainer's ``snapshot.world_of``: a deployment,
and since when). At registration the trainer records per world the candidate's holdout
MAE, the champion's, and how many drive runs the world's holdout has; the registry's gate
judges forgetting from them and the drift monitor judges the labelled error of a frame
against the holdout MAE of the world it looks like.
"""

from __future__ import annotations

import re

CANDIDATE_MAE = "holdout_mae_mm/world/"
CHAMPION_MAE = "champion_mae_mm/world/"
HOLDOUT_RUNS = "holdout_runs/world/"


def metric_name(world: str) -> str:
    """A world name as a metric key part (MLflow and the registry allow A-Z a-z 0-9 _ . - /)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", world)[:120]
