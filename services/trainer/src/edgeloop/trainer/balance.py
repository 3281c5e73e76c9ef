"""Every world its share of an epoch: what a drift retrain needs to learn the new world.

A retraining sweep's snapshot holds the serving model's old worlds (hundreds of frames)
and the new world since the drift (a few dozen when retraining starts early). Fed in
proportion, the new world is a few percent of every epoch: the candidate barely moves
on it, yet still passes the gate because it beats the champion there. So each epoch
draws an equal share of its rows from every world of the snapshot (worlds: see
``snapshot.world_of``): a large world gives a fresh random subset each epoch, a small one
is repeated, at most ``MAX_OVERSAMPLING`` times so a handful of frames is not memorised.
The epoch keeps its length, so balancing costs no time.

Validation weights every world equally too (each world's rows repeated to the largest
world's count), so the epoch a trial keeps is the one best on all worlds, as the gate
judges per world.
"""

from __future__ import annotations

import numpy as np

MAX_OVERSAMPLING = 8
"""A world's rows appear at most this many times in one epoch."""


def _groups(rows: np.ndarray, worlds: np.ndarray) -> list[np.ndarray]:
    """``rows`` split by world, in world order."""
    of_rows = worlds[rows]
    return [rows[of_rows == world] for world in np.unique(of_rows)]


def epoch_rows(rows: np.ndarray, worlds: np.ndarray | None,
               rng: np.random.Generator) -> np.ndarray:
    """One epoch's training rows: an equal share of ``len(rows)`` from every world.

    ``worlds`` holds the world index of every row of the arrays (None: one world, and
    ``rows`` are returned as they are). Unordered; the caller shuffles.
    """
    rows = np.asarray(rows)
    if worlds is None or len(rows) == 0:
        return rows
    groups = _groups(rows, worlds)
    if len(groups) < 2:
        return rows
    quota = len(rows) // len(groups)
    drawn = []
    for group in groups:
        take = min(quota, MAX_OVERSAMPLING * len(group))
        repeats, rest = divmod(take, len(group))
        drawn.append(np.tile(group, repeats))
        drawn.append(rng.choice(group, rest, replace=False))
    return np.concatenate(drawn)


def validation_rows(rows: np.ndarray, worlds: np.ndarray | None) -> np.ndarray:
    """Validation rows weighting every world equally (deterministic, capture order kept)."""
    rows = np.asarray(rows)
    if worlds is None or len(rows) == 0:
        return rows
    groups = _groups(rows, worlds)
    if len(groups) < 2:
        return rows
    size = max(len(group) for group in groups)
    return np.sort(np.concatenate([np.resize(group, size) for group in groups]))
