"""Trials on a pre-resized (format 2) archive, in reused Ray workers.

A 4-trial sweep on 2 CPUs runs its trials two at a time; with ``reuse_actors`` the last
two run in the first two's workers (no new process, no second TensorFlow import), also
after ASHA stopped a trial early (its blocked ``tune.report`` is ended by SystemExit). Runs
``tune.run_sweep`` in-process on the session's local Ray, like the trainer does.
"""

from __future__ import annotations

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
    def trial_started(self, *args: Any) -> None: ...
    def epoch(self, *args: Any) -> None: ...
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
    best = tune.run_sweep(plan, _Hooks())
    assert math.isfinite(best.val_mae_mm)
    # the trial's float32 model's weights serve in the uint8 model export rebuilds
    cfg = best.config
    build_model(cfg["architecture"], cfg["filters"], cfg["dropout"], cfg["dense_units"]
                ).load_weights(best.checkpoint_dir / tune.WEIGHTS_FILE)
    spans = [json.loads(line) for line in trace_file.read_text().splitlines() if line.strip()]
    trials = [s for s in spans if s["name"] == "sweep.trial.train"]
    assert len(trials) == 4, "one span per trial, stopped early (ASHA at epoch 2) or not"
    pids = {s["resource"]["attributes"]["process.pid"] for s in trials}
    assert len(pids) <= plan.resources.concurrent < 4, f"workers reused: {pids}"
    for span in trials:  # a stopped trial's span is marked so, and is not an error
        assert span["status"]["status_code"] != "ERROR", span
