"""When a model forgets a world: the one rule the registry's gate and the trainer share.

A candidate forgets a world when its MAE there exceeds the champion's by more than 25 %
and 1 mm (small per-world sets are noisy; both bounds must be exceeded). The gate judges
only worlds the champion knew (``edgeloop.registry.promotion.known_worlds``). The registry's
promotion gate refuses such a candidate (``edgeloop.registry.promotion``); a fine-tuning
trial scores its checkpoints by the same rule on its validation frames
(``edgeloop.trainer.forgetting``), so a sweep offers the gate a checkpoint it can accept.

A world's holdout MAE is the mean over its holdout's drive runs, and a run is one sample,
not a measurement of the world: its ~25 consecutive frames share one approach (one
distance sweep, one angle). The per-run MAE of one version in a world it was trained on
spreads by 2x and more (quick demo of 2026-12-02 11:05: v1 on beige 3.4-4.3 mm, v4 on
green 2.8-8.0 mm). So on a single-run world the gate only refuses what no run-to-run
spread explains: more than twice the champion's MAE and 2 mm above it. The spread of a
mean of k runs narrows as 1/sqrt(k), and so do the bounds: ratio 1 + 1/sqrt(k) and slack
2/sqrt(k) mm, down to the tight rule (1.25x, +1 mm), reached at 16 runs. Why graded and
not tight from two runs on: with the tight rule from two runs, the refusals for forgetting
moved to the worlds with 2-3 runs (quick demo G of 2026-12-02: 1.30x, 1.38x, 1.29x; the
full demo of 20:12: 5.06 vs 3.91 mm, 1.29x, on beige-distant's 2 runs, for a candidate at
3.09 mm overall against the drifted champion's 5.22), each costing the drifted robots a
second sweep. A world of unknown runs is judged by the tight rule.
"""

from __future__ import annotations

import math

FORGET_RATIO = 1.25
FORGET_SLACK_MM = 1.0
SINGLE_RUN_RATIO = 2.0
SINGLE_RUN_SLACK_MM = 2.0


def allowed_mae_mm(champion_mae_mm: float, holdout_runs: int | None = None) -> float:
    """The largest MAE on a world that does not count as forgetting it.

    ``holdout_runs``: how many drive runs the world's holdout has (None: unknown, judged
    by the tight rule); fewer runs are judged by wider bounds (see the module doc).
    """
    ratio, slack = FORGET_RATIO, FORGET_SLACK_MM
    if holdout_runs is not None and holdout_runs >= 1:
        narrowing = 1.0 / math.sqrt(holdout_runs)
        ratio = max(ratio, 1.0 + (SINGLE_RUN_RATIO - 1.0) * narrowing)
        slack = max(slack, SINGLE_RUN_SLACK_MM * narrowing)
    return max(champion_mae_mm * ratio, champion_mae_mm + slack)
