"""The new world its share of every epoch: what a drift retrain needs to learn it.

A retraining sweep's snapshot holds the serving model's old worlds (hundreds of frames)
and the new world since the drift (a few dozen when retraining starts early). Fed in
proportion, the new world is a few percent of every epoch: one measured candidate barely
moved on it (44 mm on the green floor) yet passed the gate, because it still beat the
champion there. So a world smaller than the average world's share of the training rows
is repeated up to that share (at most ``MAX_OVERSAMPLING`` times, so a handful of frames
is not memorised), the extra rows drawn afresh every epoch; larger worlds keep every row.

Why not an equal share for all (the larger worlds subsampled to it): measured in the
demo, a fine-tuned candidate then saw too little of the old world and forgot it (beige
2.5 → 3.6 mm), and the gate rightly refused it. Validation stays in proportion, as the
gate's overall holdout MAE is.
"""

from __future__ import annotations

import numpy as np

MAX_OVERSAMPLING = 8
"""A world's rows appear at most this many times in one epoch."""


def epoch_rows(rows: np.ndarray, worlds: np.ndarray | None,
               rng: np.random.Generator, limit: int = 0) -> np.ndarray:
    """One epoch's training rows: ``rows``, small worlds repeated up to the average share.

    ``worlds`` holds the world index of every row of the arrays (None: one world, and
    ``rows`` are returned as they are). ``limit`` > 0 caps the epoch: that many of the
    balanced rows, drawn afresh each epoch (see :func:`capped`). Unordered; the caller
    shuffles.
    """
    return capped(_balanced(np.asarray(rows), worlds, rng), limit, rng)


def capped(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` of ``rows`` (0: all), drawn without replacement.

    Consecutive frames of a drive are nearly the same image, so an epoch of a random part
    of a large training set teaches about what the whole would, for that part's cost;
    drawn anew every epoch, the trial still sees every frame over its epochs.
    """
    if limit <= 0 or len(rows) <= limit:
        return rows
    return rng.choice(rows, limit, replace=False)


def _balanced(rows: np.ndarray, worlds: np.ndarray | None,
              rng: np.random.Generator) -> np.ndarray:
    if worlds is None or len(rows) == 0:
        return rows
    of_rows = worlds[rows]
    groups = [rows[of_rows == world] for world in np.unique(of_rows)]
    if len(groups) < 2:
        return rows
    share = len(rows) // len(groups)
    drawn = [rows]
    for group in groups:
        extra = min(share, MAX_OVERSAMPLING * len(group)) - len(group)
        if extra > 0:
            repeats, rest = divmod(extra, len(group))
            drawn.append(np.tile(group, repeats))
            drawn.append(rng.choice(group, rest, replace=False))
    return np.concatenate(drawn)
