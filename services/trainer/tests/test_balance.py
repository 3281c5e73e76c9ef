"""Every world its share of an epoch (balance.py), and the trial's batches use it."""

from __future__ import annotations

import numpy as np
from edgeloop.trainer.balance import MAX_OVERSAMPLING, epoch_rows, validation_rows


def _worlds(*sizes: int) -> np.ndarray:
    return np.concatenate([np.full(size, world, dtype=np.int16)
                           for world, size in enumerate(sizes)])


def test_a_small_new_world_gets_an_equal_share_of_the_epoch() -> None:
    worlds = _worlds(900, 60)
    rows = epoch_rows(np.arange(960), worlds, np.random.default_rng(1))
    counts = np.bincount(worlds[rows])
    assert counts.tolist() == [480, 480]
    # every new-world frame eight times, the old world a subset without repeats
    assert set(np.bincount(rows[worlds[rows] == 1]).tolist()[900:]) == {8}
    old = rows[worlds[rows] == 0]
    assert len(np.unique(old)) == len(old) == 480


def test_oversampling_is_capped() -> None:
    worlds = _worlds(900, 10)
    rows = epoch_rows(np.arange(910), worlds, np.random.default_rng(1))
    assert np.bincount(worlds[rows]).tolist() == [455, 10 * MAX_OVERSAMPLING]


def test_epochs_draw_different_subsets_of_a_large_world() -> None:
    worlds = _worlds(900, 100)
    rng = np.random.default_rng(3)
    seen = [set(epoch_rows(np.arange(1000), worlds, rng).tolist()) for _ in range(6)]
    assert seen[0] != seen[1]
    assert len(set().union(*seen) & set(range(900))) > 850, "over epochs the old world is seen"


def test_one_world_or_no_worlds_leaves_the_rows_alone() -> None:
    rows = np.arange(50)
    assert epoch_rows(rows, None, np.random.default_rng(0)) is rows
    np.testing.assert_array_equal(epoch_rows(rows, _worlds(50), np.random.default_rng(0)), rows)
    np.testing.assert_array_equal(validation_rows(rows, None), rows)


def test_validation_weights_every_world_equally_and_is_deterministic() -> None:
    worlds = _worlds(150, 12, 40)
    rows = np.flatnonzero(np.arange(202) % 2 == 0)  # the validation rows of some split
    first = validation_rows(rows, worlds)
    np.testing.assert_array_equal(first, validation_rows(rows, worlds))
    counts = np.bincount(worlds[first])
    assert counts.tolist() == [75, 75, 75]
    assert set(first.tolist()) == set(rows.tolist())


def test_the_trial_batches_balance_the_worlds_each_epoch() -> None:
    import keras
    from edgeloop.trainer.tune import batches_class

    worlds = _worlds(300, 20)
    images = np.zeros((320, 2, 2, 3), dtype=np.uint8)
    targets = np.arange(320, dtype=np.float32)
    train = batches_class(keras)(images, targets, np.arange(320), 32, True, 7, worlds)
    for _ in range(2):
        fed = np.concatenate([train[i][1] for i in range(len(train))]).astype(int)
        assert np.bincount(worlds[fed]).tolist() == [160, 160]
        train.on_epoch_end()
