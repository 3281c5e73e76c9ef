"""A trial's batches and the loop that feeds them to its model, one batch at a time.

Trials do not hand their data to Keras's ``fit``/``predict``: with the TensorFlow backend
those wrap a ``PyDataset`` in ``tf.data``'s generator dataset, whose prefetch threads
compete with the training step for the node's CPUs. On the 2-CPU dev VM an epoch of 2,109
frames took 2.6 s through ``fit`` (1.4 s in some epochs, the same CPU time) and 1.3–1.6 s
as a plain loop of ``train_on_batch`` over the same batches (bench/README, "Trainer").
Taking a batch is a slice of the memory-mapped image array on the trial's own thread;
nothing runs beside the step.

Every batch has the same size, so each of the trial's two functions (a training step, a
prediction) is traced once: a short last batch would trace it again (0.5 s of a trial's
first epoch on the dev VM). A training epoch's short last batch is filled with rows drawn
from earlier in the same epoch; a short validation batch is padded and its padding's
outputs dropped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from edgeloop.trainer.balance import epoch_rows


class Batches:
    """Batches of ``index`` rows from a (memory-mapped) image array.

    Shuffled batches are training: every epoch draws its rows anew, small worlds of the
    snapshot repeated up to their share (:func:`~edgeloop.trainer.balance.epoch_rows`),
    at most ``limit`` rows per epoch when ``limit`` > 0. Unshuffled batches are ``index``'s
    rows in its order (validation).
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, index: Any, batch_size: int,
                 shuffle: bool, seed: int, worlds: np.ndarray | None = None,
                 limit: int = 0) -> None:
        self.images, self.targets, self.index = images, targets, np.asarray(index)
        self.batch_size, self.shuffle, self.worlds, self.limit = batch_size, shuffle, worlds, limit
        self.rng = np.random.default_rng(seed)
        self.order = self._draw() if shuffle else self.index

    def _draw(self) -> np.ndarray:
        rows = self.rng.permutation(epoch_rows(self.index, self.worlds, self.rng, self.limit))
        # a short last batch filled with the epoch's first rows (a random draw: shuffled)
        return np.resize(rows, _whole_batches(len(rows), self.batch_size))

    def __len__(self) -> int:
        return max(1, math.ceil(len(self.order) / self.batch_size))

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        if self.shuffle:  # sorted, a batch reads the mapped file forwards; its order is moot
            rows = np.sort(rows)
        return np.asarray(self.images[rows]), self.targets[rows]

    def next_epoch(self) -> None:
        """Draw the next epoch's rows (training batches only)."""
        if self.shuffle:
            self.order = self._draw()


def _whole_batches(rows: int, batch_size: int) -> int:
    """``rows`` rounded up to whole batches."""
    return math.ceil(rows / batch_size) * batch_size


def train_epoch(model: Any, batches: Batches) -> float:
    """One epoch of ``model`` (a compiled Keras model) on ``batches``; returns its mean loss.

    The mean is over the rows the epoch trained on (a short last batch's filling
    included), as ``fit``'s history reports it.
    """
    total = rows = 0.0
    for i in range(len(batches)):
        images, targets = batches[i]
        logs = model.train_on_batch(images, targets, return_dict=True)
        total += float(logs["loss"]) * len(targets)
        rows += len(targets)
    batches.next_epoch()
    return total / rows if rows else math.nan


def predict(model: Any, batches: Batches) -> np.ndarray:
    """``model``'s outputs for every row of ``batches``, in their order, flattened."""
    rows = len(batches.order)
    if not rows:
        return np.empty(0, np.float32)
    outputs = []
    for i in range(len(batches)):
        images = batches[i][0]
        if len(images) < batches.batch_size:  # padded to the traced batch size
            images = np.resize(images, (batches.batch_size, *images.shape[1:]))
        outputs.append(np.asarray(model.predict_on_batch(images)).reshape(-1))
    return np.concatenate(outputs)[:rows]
