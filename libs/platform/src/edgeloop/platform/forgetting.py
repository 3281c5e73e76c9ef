"""When a model forgets a world: the one rule the registry's gate and the trainer share.

A candidate forgets a world when its MAE there exceeds the champion's by more than 25 %
and 1 mm (small per-world sets are noisy; both bounds must be exceeded). The registry's
promotion gate refuses such a candidate (``edgeloop.registry.promotion``); a fine-tuning
trial scores its checkpoints by the same rule on its validation frames
(``edgeloop.trainer.forgetting``), so a sweep offers the gate a checkpoint it can accept.
"""

from __future__ import annotations

FORGET_RATIO = 1.25
FORGET_SLACK_MM = 1.0


def allowed_mae_mm(champion_mae_mm: float) -> float:
    """The largest MAE on a world that does not count as forgetting it."""
    return max(champion_mae_mm * FORGET_RATIO, champion_mae_mm + FORGET_SLACK_MM)
