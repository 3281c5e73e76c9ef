"""A fine-tuning trial is scored as the gate judges: its validation MAE plus what it forgets.

Unit tests of the rule, and one real sweep (Ray Tune on the session's local Ray) that
fine-tunes a model fitted to world 0 on a snapshot whose world 1 contradicts it (the same
images, labels 1,500 mm higher): learning world 1 costs world 0, the trials report it,
and the sweep's outcome is the checkpoint with the lowest score, not the lowest MAE.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.platform.forgetting import allowed_mae_mm
from edgeloop.registry.promotion import World, forgotten
from edgeloop.trainer import forgetting, tune
from edgeloop.trainer.model import build_model, compile_model
from edgeloop.trainer.model_input import INPUT_SHAPE, TARGET_SCALE_MM


def test_the_trial_rule_is_the_gates() -> None:
    # the gate refuses a world of unknown or many runs exactly where the trial's penalty
    # starts; on fewer runs the gate's bounds are wider, so the trial is never more lenient
    for champion in (0.5, 2.0, 4.0, 8.0):
        limit = allowed_mae_mm(champion)
        assert limit == pytest.approx(max(champion * 1.25, champion + 1.0))
        for runs in (None, 16):
            assert forgotten({"w": World(limit + 0.01, champion, runs)}, 0.0)
            assert not forgotten({"w": World(limit, champion, runs)}, 0.0)
        assert all(allowed_mae_mm(champion, runs) >= limit for runs in range(1, 20))
        assert forgetting.penalty_mm({0: limit + 0.5}, {0: champion}) == pytest.approx(0.5)
        assert forgetting.penalty_mm({0: limit}, {0: champion}) == 0.0


def test_penalty_sums_the_excess_of_every_known_world() -> None:
    reference = {0: 2.0, 1: 40.0}  # world 1: the fine-tuned version never saw it
    assert forgetting.penalty_mm({0: 2.5, 1: 3.0}, reference) == 0.0  # learned 1, kept 0
    assert forgetting.penalty_mm({0: 5.0, 1: 3.0}, reference) == pytest.approx(2.0)
    assert forgetting.penalty_mm({0: 5.0, 1: 60.0}, reference) == pytest.approx(2.0 + 10.0)
    assert forgetting.penalty_mm({2: 99.0}, reference) == 0.0  # no reference: no judgement


def test_mae_by_world_groups_absolute_errors() -> None:
    maes = forgetting.mae_by_world(np.array([-1.0, 3.0, 10.0, -20.0]), np.array([0, 0, 1, 1]))
    assert maes == {0: 2.0, 1: 15.0}


class _Recorder:
    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def trial_started(self, *args: Any) -> None: ...
    def trial_paused(self, *args: Any) -> None: ...

    def epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(metrics)

    def trial_finished(self, *args: Any) -> None: ...


def _contradicting_worlds(folder: Path) -> tuple[Path, Path]:
    """A two-world archive and weights fitted to world 0 (the version being fine-tuned)."""
    rng = np.random.default_rng(3)
    labels0 = rng.uniform(300, 1500, 24).astype(np.float32)
    images = np.broadcast_to((labels0 / 8)[:, None, None, None], (24, *INPUT_SHAPE))
    # world 1: the same 24 images again, labelled 1,500 mm further
    images = np.concatenate([images, images]).astype(np.float32)
    labels = np.concatenate([labels0, labels0 + 1500.0])
    world = np.array([0] * 24 + [1] * 24)
    split = np.tile(np.array([0] * 14 + [1] * 6 + [2] * 4, np.int8), 2)
    arrays = folder / "arrays.npz"
    np.savez(arrays, images=images, labels=labels, split=split, world=world,
             holdout_frames=rng.integers(0, 256, (8, 48, 64, 3), dtype=np.uint8))
    fitted = build_model("small", 4, 0.1, 8, "float32")
    compile_model(fitted, 3e-3)
    fitted.fit(images[:24], labels0 / TARGET_SCALE_MM, epochs=60, batch_size=8, verbose=0)
    weights = folder / "world0.weights.h5"
    fitted.save_weights(weights)
    return arrays, weights


def test_a_fine_tuning_sweep_is_chosen_by_its_score(ray_info: Any, tmp_path: Path) -> None:
    arrays, weights = _contradicting_worlds(tmp_path)
    values = tune.search_values(sweep_pb2.SearchSpace(
        learning_rates=[1e-2, 3e-3], batch_sizes=[8], epochs=[4], architectures=["small"],
        filters=[4], dropouts=[0.1], dense_units=[8]))
    plan = tune.SweepPlan("forgetting", arrays, values, 2,
                          tune.fit_resources(ray_info.total_cpus, 2, 0, 0), 5, tmp_path / "ray",
                          {"init_weights": str(weights)})
    recorder = _Recorder()
    best = tune.run_sweep(plan, recorder)

    epochs = recorder.epochs
    assert epochs and all(tune.SCORE in m and "val_forgetting_mm" in m for m in epochs)
    for m in epochs:  # the score is the MAE plus the forgetting, never less than the MAE
        assert m[tune.SCORE] == pytest.approx(m[tune.METRIC] + m["val_forgetting_mm"])
        assert m["val_forgetting_mm"] >= 0.0
    # learning world 1 cost world 0 what the gate would hold against the version
    assert max(m["val_forgetting_mm"] for m in epochs) > 0.0, epochs
    # the outcome is the epoch with the lowest score, and its MAE is reported as is
    chosen = min(epochs, key=lambda m: m[tune.SCORE])
    assert math.isclose(best.val_mae_mm, chosen[tune.METRIC], rel_tol=1e-6), (best, chosen)


def test_a_trial_runs_outside_tune_with_its_own_reporter(tmp_path: Path) -> None:
    # what bench/retrain_replay.py relies on: every epoch reported, weights on improvement
    arrays, weights = _contradicting_worlds(tmp_path)
    reports: list[tuple[dict[str, Any], bool, list[np.ndarray]]] = []

    def report(model: Any, metrics: dict[str, Any], with_weights: bool) -> None:
        reports.append((metrics, with_weights, model.get_weights() if with_weights else []))

    config = {"architecture": "small", "filters": 4, "dropout": 0.1, "dense_units": 8,
              "learning_rate": 1e-2, "batch_size": 8, "epochs": 5, "seed": 5,
              "arrays_path": str(arrays), "init_weights": str(weights), "rung_epochs": []}
    best = tune.train_epochs(config, report)
    assert [m["epoch"] for m, _, _ in reports] == [1, 2, 3, 4, 5]
    scores = [m[tune.SCORE] for m, _, _ in reports]
    improved = [score < min(scores[:i], default=math.inf) for i, score in enumerate(scores)]
    assert [w for _, w, _ in reports] == improved, "weights go along exactly on improvement"
    chosen = min(range(5), key=lambda i: (scores[i], i))
    assert best == pytest.approx(reports[chosen][0][tune.METRIC])
    assert reports[chosen][2] and reports[chosen][2][0].shape == reports[0][2][0].shape
