"""A trial's batches and its batch-by-batch epoch: the rows, the order, the reported loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from edgeloop.trainer.batches import Batches, predict, train_epoch

ROWS = 70  # not a multiple of the batch size: the last batch is short


def _data(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    images = rng.random((rows, 4, 5, 3), dtype=np.float32)
    targets = images.reshape(rows, -1) @ rng.random(60, dtype=np.float32) / 10
    return images, targets.astype(np.float32)


def _model(learning_rate: float) -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(4, 5, 3))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mae")
    return model


def test_training_batches_are_whole_cover_every_row_and_reshuffle() -> None:
    images, targets = _data()
    rows = np.arange(10, ROWS)  # 60 rows: three batches of 16 and one of 12 filled up to 16
    batches = Batches(images, targets, rows, 16, shuffle=True, seed=3)
    epochs = []
    for _ in range(2):
        fed = [batches[i] for i in range(len(batches))]
        assert [len(x) for x, _ in fed] == [16] * 4 and [len(y) for _, y in fed] == [16] * 4
        seen = np.concatenate([y for _, y in fed])
        assert set(seen.tolist()) == set(targets[rows].tolist())  # every row, 4 of them twice
        last = fed[-1][1]
        assert len(set(last.tolist())) == 16, "no row twice within one batch"
        epochs.append(batches.order.copy())
        batches.next_epoch()
    assert not np.array_equal(epochs[0], epochs[1])


def test_unshuffled_batches_keep_the_index_order() -> None:
    images, targets = _data()
    index = np.array([5, 1, 9, 3, 7])
    batches = Batches(images, targets, index, 2, shuffle=False, seed=0)
    batches.next_epoch()
    got = np.concatenate([batches[i][1] for i in range(len(batches))])
    np.testing.assert_array_equal(got, targets[index])


def test_an_epoch_reports_the_mean_loss_over_the_rows_it_trained_on() -> None:
    images, targets = _data()
    model = _model(learning_rate=0.0)  # weights stay: the epoch's loss is the rows' MAE
    batches = Batches(images, targets, np.arange(ROWS), 32, shuffle=True, seed=0)
    fed = batches.order.copy()  # 70 rows and 26 of them again, to fill the last batch
    loss = train_epoch(model, batches)
    errors = np.abs(model.predict(images, verbose=0).reshape(-1) - targets)
    assert loss == pytest.approx(float(errors[fed].mean()), rel=1e-5)
    assert len(fed) == 96 and loss != pytest.approx(float(errors.mean()), rel=1e-5)


def test_epochs_train_the_model() -> None:
    images, targets = _data(256)
    model = _model(learning_rate=0.02)
    batches = Batches(images, targets, np.arange(256), 16, shuffle=True, seed=0)
    losses = [train_epoch(model, batches) for _ in range(10)]
    assert losses[-1] < 0.3 * losses[0], losses


def test_predictions_follow_the_index_order_and_drop_the_last_batchs_padding() -> None:
    images, targets = _data()
    model = _model(learning_rate=0.0)
    index = np.arange(ROWS)[::-1]  # 70 rows: the last batch of 16 holds 6
    got = predict(model, Batches(images, targets, index, 16, shuffle=False, seed=0))
    np.testing.assert_allclose(got, model.predict(images[index], verbose=0).reshape(-1),
                               rtol=1e-5, atol=1e-6)
    assert predict(model, Batches(images, targets, [], 16, shuffle=False, seed=0)).shape == (0,)
