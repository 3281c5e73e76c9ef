"""The new world its share of every epoch (balance.py), and the trial's batches use it."""

from __future__ import annotations

import numpy as np
from edgeloop.trainer.balance import MAX_OVERSAMPLING, capped, epoch_rows
from edgeloop.trainer.batches import Batches


def _worlds(*sizes: int) -> np.ndarray:
    return np.concatenate([np.full(size, world, dtype=np.int16)
                           for world, size in enumerate(sizes)])


def test_a_small_new_world_is_repeated_up_to_the_average_share() -> None:
    worlds = _worlds(900, 60)
    rows = epoch_rows(np.arange(960), worlds, np.random.default_rng(1))
    assert np.bincount(worlds[rows]).tolist() == [900, 480]
    # every old frame once, every new-world frame eight times
    counts = np.bincount(rows)
    assert set(counts[:900].tolist()) == {1} and set(counts[900:].tolist()) == {8}


def test_oversampling_is_capped() -> None:
    worlds = _worlds(900, 10)
    rows = epoch_rows(np.arange(910), worlds, np.random.default_rng(1))
    assert np.bincount(worlds[rows]).tolist() == [900, 10 * MAX_OVERSAMPLING]


def test_the_extra_rows_are_drawn_afresh_each_epoch() -> None:
    worlds = _worlds(900, 100, 400)
    rng = np.random.default_rng(3)
    first, second = (epoch_rows(np.arange(1400), worlds, rng) for _ in range(2))
    assert np.bincount(worlds[first]).tolist() == [900, 466, 466]
    assert not np.array_equal(np.sort(first), np.sort(second))


def test_one_world_or_no_worlds_leaves_the_rows_alone() -> None:
    rows = np.arange(50)
    assert epoch_rows(rows, None, np.random.default_rng(0)) is rows
    np.testing.assert_array_equal(epoch_rows(rows, _worlds(50), np.random.default_rng(0)), rows)


def test_the_trial_batches_give_the_new_world_its_share_each_epoch() -> None:
    worlds = _worlds(300, 20)
    images = np.zeros((320, 2, 2, 3), dtype=np.uint8)
    targets = np.arange(320, dtype=np.float32)
    train = Batches(images, targets, np.arange(320), 20, True, 7, worlds)  # 460 = 23 x 20
    for _ in range(2):
        fed = np.concatenate([train[i][1] for i in range(len(train))]).astype(int)
        assert np.bincount(worlds[fed]).tolist() == [300, 160]
        train.next_epoch()


def test_a_capped_epoch_draws_that_many_distinct_rows_afresh_each_epoch() -> None:
    rng = np.random.default_rng(3)
    rows = np.arange(100, 2100)
    epochs = [capped(rows, 500, rng) for _ in range(8)]
    for drawn in epochs:
        assert len(drawn) == 500 and len(np.unique(drawn)) == 500
        assert np.isin(drawn, rows).all()
    assert not np.array_equal(np.sort(epochs[0]), np.sort(epochs[1]))
    # over its epochs a trial sees most of the set, not the same part again and again
    assert len(np.unique(np.concatenate(epochs))) > 0.9 * len(rows)
    np.testing.assert_array_equal(capped(rows, 0, rng), rows)
    np.testing.assert_array_equal(capped(rows[:300], 500, rng), rows[:300])


def test_a_capped_epoch_keeps_the_new_worlds_share_on_average() -> None:
    worlds = _worlds(1800, 60)
    rng = np.random.default_rng(5)
    shares = [np.bincount(worlds[epoch_rows(np.arange(1860), worlds, rng, limit=600)],
                          minlength=2) for _ in range(50)]
    assert all(share.sum() == 600 for share in shares)
    # balanced, the new world is 480 of 2,280 rows: 21 % of a capped epoch too
    assert abs(np.mean([share[1] for share in shares]) / 600 - 480 / 2280) < 0.02


def test_the_trial_batches_honour_the_epoch_cap() -> None:
    images = np.zeros((1000, 2, 2, 3), dtype=np.uint8)
    targets = np.arange(1000, dtype=np.float32)
    train = Batches(images, targets, np.arange(1000), 32, True, 7, None, 256)
    assert len(train) == 8
    fed = np.concatenate([train[i][1] for i in range(len(train))]).astype(int)
    assert len(fed) == 256 and len(np.unique(fed)) == 256
