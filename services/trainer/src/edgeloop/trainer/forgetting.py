"""A fine-tuning trial judged as the registry's gate will judge it: no world forgotten.

The gate refuses a candidate whose holdout MAE on a world exceeds the champion's there by
more than 25 % and 1 mm (``edgeloop.platform.forgetting``, the rule both share). A
fine-tuning trial used to be judged by its overall validation MAE alone, so the checkpoint
a sweep offered the gate was often one that had drifted off an older world: in the quick
demo of 2026-12-02 10:22, two of four drift retrains were refused for it (green 5.44 vs
3.15 mm, 3.37 vs 2.16 mm), and each refusal cost a second sweep of about a minute. Their
trials' validation MAEs jumped by several millimetres from one epoch to the next, so an
earlier epoch or the other trial would often have done.

So a trial that fine-tunes a version measures that version on its validation frames per
world before the first epoch (the reference), and every epoch adds to its validation MAE
the millimetres by which any world exceeds what the gate allows against that reference:
the *score* Tune selects by (the halving at rungs, the trial's best checkpoint, the
sweep's best trial). A checkpoint that forgets nothing scores its plain validation MAE.
The new world never weighs in: the fine-tuned version did not know it, so its reference
there is high. The holdout, which the gate judges on, stays unseen.
"""

from __future__ import annotations

import numpy as np
from edgeloop.platform.forgetting import allowed_mae_mm


def mae_by_world(errors_mm: np.ndarray, worlds: np.ndarray) -> dict[int, float]:
    """Mean absolute error per world index."""
    errors_mm, worlds = np.abs(np.asarray(errors_mm, np.float64)), np.asarray(worlds)
    return {int(w): float(errors_mm[worlds == w].mean()) for w in np.unique(worlds)}


def penalty_mm(maes: dict[int, float], reference: dict[int, float]) -> float:
    """Millimetres, summed over the worlds, by which ``maes`` exceed what the gate allows."""
    return float(sum(max(0.0, mae - allowed_mae_mm(reference[w]))
                     for w, mae in maes.items() if w in reference))
