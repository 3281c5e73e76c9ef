"""When a model forgets a world: the one rule the registry's gate and the trainer share.

A candidate forgets a world when its MAE there exceeds the champion's by more than 25 %
and 1 mm (small per-world sets are noisy; both bounds must be exceeded). The registry's
promotion gate refuses such a candidate (``edgeloop.registry.promotion``); a fine-tuning
trial scores its checkpoints by the same rule on its validation frames
(``edgeloop.trainer.forgetting``), so a sweep offers the gate a checkpoint it can accept.

A world whose holdout is a single drive run is one sample, not a measurement of the world:
its ~25 consecutive frames share one approach (one distance sweep, one angle). The per-run
MAE of one version in a world it was trained on spreads by 2x and more (quick demo of
2026-12-02 11:05: v1 on beige 3.4-4.3 mm, v4 on green 2.8-8.0 mm), so on such a world the
gate only refuses what no run-to-run spread explains: more than twice the champion's MAE
and 2 mm above it. In the quick demos every refusal for forgetting was on a single-run world
(3.37 vs 2.14 mm and the like), each costing a second sweep of 60-100 s while the robots
kept the drifted version's 30 mm errors. Worlds with two or more holdout runs keep the
tight rule.
"""

from __future__ import annotations

FORGET_RATIO = 1.25
FORGET_SLACK_MM = 1.0
SINGLE_RUN_RATIO = 2.0
SINGLE_RUN_SLACK_MM = 2.0


def allowed_mae_mm(champion_mae_mm: float, holdout_runs: int | None = None) -> float:
    """The largest MAE on a world that does not count as forgetting it.

    ``holdout_runs``: how many drive runs the world's holdout has (None: unknown, judged
    as several); a single run is judged by the wider bounds (see the module doc).
    """
    if holdout_runs == 1:
        return max(champion_mae_mm * SINGLE_RUN_RATIO, champion_mae_mm + SINGLE_RUN_SLACK_MM)
    return max(champion_mae_mm * FORGET_RATIO, champion_mae_mm + FORGET_SLACK_MM)
