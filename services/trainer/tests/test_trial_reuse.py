"""Trials on a pre-resized (format 2) archive, in reused Ray workers.

A 4-trial sweep on 2 CPUs runs its trials two at a time; with ``reuse_actors`` the last
two run in the first two's workers (no new process, no second TensorFlow import), also
after the scheduler paused or stopped a trial at its rung (its blocked ``tune.report`` is
ended by SystemExit). Every trial trains to the rung (epoch 2); the better two go on to
epoch 3, a paused one from its rung's checkpoint. Runs ``tune.run_sweep`` in-process on
the session's local Ray, like the trainer does.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.trainer import tune
from edgeloop.trainer.model import build_model
from edgeloop.trainer.model_input import INPUT_SHAPE


class _Hooks:
    def __init__(self) -> None:
        self.epochs: dict[str, list[int]] = {}
        self.paused: list[tuple[str, int]] = []
        self.widened: list[tuple[str, int, float]] = []
        self.resumed: list[str] = []

    def trial_started(self, trial_id: str, params: Any, resumed: bool) -> None:
        if resumed:
            self.resumed.append(trial_id)

    def trial_paused(self, trial_id: str, epoch: int, cpus: float) -> None:
        if cpus:
            self.widened.append((trial_id, epoch, cpus))
        else:
            self.paused.append((trial_id, epoch))

    def epoch(self, trial_id: str, epoch: int, metrics: Any) -> None:
        self.epochs.setdefault(trial_id, []).append(epoch)

    def trial_finished(self, *args: Any) -> None: ...


def _archive(folder: Path) -> Path:
    """A format 2 archive: float32 model-size images (what trials read) and raw holdout frames."""
    rng = np.random.default_rng(0)
    labels = rng.uniform(300, 3000, 32).astype(np.float32)
    images = np.broadcast_to((labels / 12)[:, None, None, None], (32, *INPUT_SHAPE))
    split = np.array([0] * 20 + [1] * 8 + [2] * 4, np.int8)
    path = folder / "arrays.npz"
    np.savez(path, images=np.ascontiguousarray(images, np.float32), labels=labels, split=split,
             holdout_frames=rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8))
    return path


def test_trials_train_on_pre_resized_images_in_reused_workers(ray_info: Any,
                                                              tmp_path: Path) -> None:
    trace_file = tmp_path / "spans" / "trainer.jsonl"
    values = tune.search_values(sweep_pb2.SearchSpace(
        learning_rates=[1e-3, 3e-3], batch_sizes=[8, 16], epochs=[3], architectures=["small"],
        filters=[4], dropouts=[0.1], dense_units=[8]))
    plan = tune.SweepPlan("reuse", _archive(tmp_path), values, 4,
                          tune.fit_resources(ray_info.total_cpus, 4, 0, 0), 7, tmp_path / "ray",
                          {"trace_file": str(trace_file), "trace_otlp_endpoint": ""})
    hooks = _Hooks()
    best = tune.run_sweep(plan, hooks)
    assert math.isfinite(best.val_mae_mm)
    # synchronous halving: all four reach the rung at epoch 2, the better two go on; a trial
    # resumed after its pause goes on from epoch 3, it does not train from epoch 1 again
    assert sorted(hooks.epochs.values()) == [[1, 2], [1, 2], [1, 2, 3], [1, 2, 3]], hooks.epochs
    assert {epoch for _, epoch in hooks.paused} == {2} and len(hooks.paused) >= 2
    going_on = {t for t, epochs in hooks.epochs.items() if len(epochs) == 3}
    assert set(hooks.resumed) == going_on & {t for t, _ in hooks.paused}
    assert (best.checkpoint_dir / tune.OPTIMIZER_FILE).exists()
    # the trial's float32 model's weights serve in the uint8 model export rebuilds
    cfg = best.config
    build_model(cfg["architecture"], cfg["filters"], cfg["dropout"], cfg["dense_units"]
                ).load_weights(best.checkpoint_dir / tune.WEIGHTS_FILE)
    spans = [json.loads(line) for line in trace_file.read_text().splitlines() if line.strip()]
    trials = [s for s in spans if s["name"] == "sweep.trial.train"]
    ids = [s["attributes"]["edgeloop.trial_id"] for s in trials]
    assert set(ids) == set(hooks.epochs), "a span for every trial"
    assert len(trials) == 4 + len(hooks.resumed), "one span per stretch a trial trained"
    pids = {s["resource"]["attributes"]["process.pid"] for s in trials}
    assert len(pids) <= plan.resources.concurrent < 4, f"workers reused: {pids}"
    for span in trials:  # a stopped trial's span is marked so, and is not an error
        assert span["status"]["status_code"] != "ERROR", span


def test_a_checkpoint_carries_the_optimizer_state_a_resumed_trial_goes_on_with(
        tmp_path: Path) -> None:
    import keras
    from edgeloop.trainer.model import compile_model

    def trained(steps: int) -> Any:
        keras.utils.set_random_seed(3)
        model = build_model("small", 4, 0.1, 8)
        compile_model(model, 1e-3)
        frames = np.full((4, *INPUT_SHAPE), 100, np.uint8)
        for _ in range(steps):
            model.train_on_batch(frames, np.ones(4, np.float32))
        return model

    model = trained(3)
    saved: dict[str, Any] = {}
    model.optimizer.save_own_variables(saved)
    np.savez(tmp_path / tune.OPTIMIZER_FILE, **saved)
    fresh = trained(0)
    tune._load_optimizer(fresh, tmp_path / tune.OPTIMIZER_FILE)
    assert int(fresh.optimizer.iterations.numpy()) == 3, "Adam's step count came back"
    for got, want in zip(fresh.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    tune._load_optimizer(fresh, tmp_path / "none.npz")  # an older checkpoint: nothing to load


def test_the_survivor_of_a_rung_trains_on_the_cpus_its_rival_freed(ray_info: Any,
                                                                  tmp_path: Path) -> None:
    # 2 trials on 2 CPUs, one each; rung 2 stops one and the other goes on in a worker with
    # both CPUs and as many TensorFlow threads, from its rung's checkpoint
    trace_file = tmp_path / "spans" / "trainer.jsonl"
    values = tune.search_values(sweep_pb2.SearchSpace(
        learning_rates=[1e-3, 3e-3], batch_sizes=[8], epochs=[4], architectures=["small"],
        filters=[4], dropouts=[0.1], dense_units=[8]))
    # the test's epochs take well under a second: any epochs left are worth a new worker
    resources = dataclasses.replace(tune.fit_resources(ray_info.total_cpus, 2, 0, 0),
                                    widen_worth_s=0.0)
    assert (resources.concurrent, resources.cpus_per_trial) == (2, 1.0)
    plan = tune.SweepPlan("widen", _archive(tmp_path), values, 2, resources, 7,
                          tmp_path / "ray",
                          {"trace_file": str(trace_file), "trace_otlp_endpoint": ""})
    hooks = _Hooks()
    best = tune.run_sweep(plan, hooks)
    assert math.isfinite(best.val_mae_mm)
    assert sorted(hooks.epochs.values()) == [[1, 2], [1, 2, 3, 4]], hooks.epochs
    survivor = next(t for t, epochs in hooks.epochs.items() if len(epochs) == 4)
    assert survivor in hooks.resumed
    assert hooks.widened == [(survivor, 2, 2.0)]
    spans = [json.loads(line) for line in trace_file.read_text().splitlines() if line.strip()]
    stretches = [(s["attributes"]["edgeloop.trial_id"], s["attributes"]["edgeloop.tf_threads"],
                  s["resource"]["attributes"]["process.pid"])
                 for s in spans if s["name"] == "sweep.trial.train"]
    assert sorted(threads for _, threads, _ in stretches) == [1, 1, 2], stretches
    first_pids = {pid for _, threads, pid in stretches if threads == 1}
    (wide_pid,) = {pid for trial, threads, pid in stretches if trial == survivor and threads == 2}
    assert wide_pid not in first_pids, "a new worker: TensorFlow's pools are sized at start"
