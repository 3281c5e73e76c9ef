"""Ray Tune sweeps: the search space, the per-trial training function and the Tuner.

Trials run in Ray workers. They share the snapshot's images: ``arrays.npz`` is stored
uncompressed, so every trial maps its ``images`` member read-only
(:func:`~edgeloop.trainer.snapshot.mapped_member`) and feeds its model batch by batch from
it (:mod:`~edgeloop.trainer.batches`): the node's page cache holds the images once however
many trials run, and no trial loads or copies the training set. Those images are already
at the model's input size (float16, resized by the model's own layer when the snapshot was
built), so no epoch resizes a frame again; the trial's model takes them as they are stored,
casts them to float32, and its resize is the identity.
Each trial caps TensorFlow's thread pools to its CPU share (Ray reserves CPUs but does not
cap TF's threads), trains epoch by epoch and reports
``val_mae_mm`` after every epoch, and ``val_score_mm``, what Tune selects by: the
validation MAE, plus, for a trial fine-tuning a version, the millimetres by which it
forgets a world the gate would hold against it (``forgetting`` module). Synchronous
successive halving (``halving`` module) stops the poor ones early: trials pause at every
rung until all have reached it, then the better half goes on. A checkpoint (weights and
optimizer state) is reported whenever the score improves, so the best epoch of the best
trial can be exported afterwards, and at every rung, so a paused trial goes on from where
it stopped.

The Tuner runs in a worker thread of the trainer; cancelling sets an event that the
sweep's :class:`SweepStopper` turns into ``stop_all``. Stoppers and callbacks only
carry the sweep id (Ray pickles them); the live objects sit in module registries.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.platform.errors import EdgeloopError, InvalidArgument
from edgeloop.trainer import forgetting
from edgeloop.trainer.batches import Batches, predict, train_epoch
from edgeloop.trainer.halving import CpuBudget, SynchronousHalving, rung_epochs
from edgeloop.trainer.model_input import ARCHITECTURES
from edgeloop.trainer.outcome import WEIGHTS_FILE, TuneOutcome
from edgeloop.trainer.trial_tracing import TrialSpans, trace_config, trial_span
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

log = logging.getLogger(__name__)
METRIC = "val_mae_mm"
SCORE = "val_score_mm"
"""What Tune selects by: ``val_mae_mm`` plus the forgetting penalty (module doc)."""
PROGRESS_FILE = "progress.json"
OPTIMIZER_FILE = "optimizer.npz"
GRACE_EPOCHS, REDUCTION_FACTOR = 2, 2
"""Halving: trials are first compared after 2 epochs, then at 4, 8, ...; half go on."""
TRIAL_RETRIES = 2
"""Times a trial is started again after its worker died (node lost, OOM-killed, killed)."""

DEFAULTS: dict[str, list[Any]] = {
    "learning_rate": [1e-3, 3e-4],
    "batch_size": [32, 64],
    "dropout": [0.1, 0.3],
    "filters": [16],
    "epochs": [10],
    "architecture": ["thesis"],
    "dense_units": [64],
}
_FIELDS = {
    "learning_rate": "learning_rates",
    "batch_size": "batch_sizes",
    "dropout": "dropouts",
    "filters": "filters",
    "epochs": "epochs",
    "architecture": "architectures",
    "dense_units": "dense_units",
}


class Cancelled(EdgeloopError):
    """The sweep was cancelled while its trials ran."""


class TrialHooks(Protocol):
    """What the driver does as trials progress (MLflow runs, progress events)."""

    def trial_started(self, trial_id: str, params: dict[str, Any], resumed: bool) -> None: ...
    def trial_paused(self, trial_id: str, epoch: int, cpus: float) -> None:
        """Paused at a rung: ``cpus`` 0 while it waits for the others, else the CPUs it is
        to go on with."""
    def epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None: ...
    def trial_finished(self, trial_id: str, status: str) -> None: ...


_CANCEL: dict[str, threading.Event] = {}
_HOOKS: dict[str, TrialHooks] = {}
_SPANS: dict[str, TrialSpans] = {}
_PAUSED: dict[str, set[str]] = {}
"""Per sweep: the trials paused at a rung (their next start is a resume)."""


def search_values(space: sweep_pb2.SearchSpace) -> dict[str, list[Any]]:
    """The values to try per hyperparameter: the request's, else the defaults; validated."""
    values = {name: list(getattr(space, fld)) or DEFAULTS[name] for name, fld in _FIELDS.items()}
    checks = {
        "learning_rate": lambda v: 0 < v < 1,
        "batch_size": lambda v: 1 <= v <= 4096,
        "dropout": lambda v: 0 <= v < 1,
        "filters": lambda v: 1 <= v <= 256,
        "epochs": lambda v: 1 <= v <= 1000,
        "dense_units": lambda v: 1 <= v <= 4096,
        "architecture": lambda v: v in ARCHITECTURES,
    }
    for name, ok in checks.items():
        bad = [v for v in values[name] if not ok(v)]
        if bad:
            raise InvalidArgument(f"search_space.{_FIELDS[name]}", f"invalid value(s) {bad}")
    return values


def param_space(values: dict[str, list[Any]]) -> dict[str, Any]:
    """Ray Tune's param space: a choice per hyperparameter with more than one value."""
    return {name: tune.choice(v) if len(v) > 1 else v[0] for name, v in values.items()}


def sample_configs(values: dict[str, list[Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` configurations drawn from the grid without repeats while it lasts, from ``seed``.

    Ray's seeded random sampler repeats one configuration per sample; drawing the points
    here makes sweeps reproducible and keeps small sweeps from trying a point twice.
    """
    import itertools

    names = list(values)
    grid = list(itertools.product(*(values[n] for n in names)))
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(grid)))
    while len(order) < count:
        order += list(rng.permutation(len(grid)))
    return [{n: _plain(v) for n, v in zip(names, grid[i], strict=True)} for i in order[:count]]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class TrialResources:
    """How many trials run at once and what each gets."""

    concurrent: int
    cpus_per_trial: float
    tf_threads: int
    """TensorFlow threads per trial; 0: as many as the trial's CPUs when it starts."""
    node_cpus: float = 0.0
    """The most CPUs one trial can hold (its node's); 0: ``cpus_per_trial``, never more."""
    widen_worth_s: float = CpuBudget.worth_s
    """A rung's survivor gets the CPUs it freed only if its epochs left take this long."""

    def budget(self, num_trials: int) -> CpuBudget:
        """The CPUs the halving may hand on to the trials a rung keeps."""
        return CpuBudget(self.cpus_per_trial, self.cpus_per_trial * self.concurrent,
                         self.node_cpus or self.cpus_per_trial, num_trials, self.widen_worth_s)


def fit_resources(
    total_cpus: float, num_trials: int, requested: int, tf_threads: int, min_cpus: int = 1,
    node_cpus: float = 0.0,
) -> TrialResources:
    """Fit concurrency to the CPUs: ``min_cpus`` per trial at least (unless ``requested``
    asks for more trials at once). ``node_cpus``: the largest node's CPUs (0: all of
    ``total_cpus`` on one node), what a trial may grow to once a rung stopped its rivals."""
    fitting = max(1, int(total_cpus) // max(1, min_cpus))
    concurrent = max(1, min(requested or fitting, num_trials, int(total_cpus) or 1))
    cpus = max(1.0, math.floor(total_cpus / concurrent))
    return TrialResources(concurrent, cpus, tf_threads, max(cpus, node_cpus or total_cpus))


def train_trial(config: dict[str, Any]) -> None:
    """One trial in a Ray worker: train, report val_mae_mm per epoch, checkpoint improvements."""
    from edgeloop.trainer.model import set_tf_threads, set_training_precision

    threads = int(config["tf_threads"]) or _trial_cpus()
    set_tf_threads(threads)
    import keras

    # the worker may have run an earlier trial (reuse_actors): drop its models and graphs
    keras.backend.clear_session()
    keras.utils.set_random_seed(int(config["seed"]))
    # decided on the worker's own node: Ray nodes may have different CPUs
    precision = set_training_precision(str(config.get("precision", "float32")))
    with trial_span(config, tune.get_context().get_trial_id() or "") as span:
        span.set_attribute("edgeloop.precision", precision)
        span.set_attribute("edgeloop.tf_threads", threads)
        span.set_attribute("edgeloop.best_val_mae_mm", train_epochs(config))


def _trial_cpus() -> int:
    """The CPUs Ray gave this stretch of the trial (more after a rung stopped its rivals)."""
    resources = tune.get_context().get_trial_resources()
    return max(1, int(resources.required_resources.get("CPU", 1)))


EpochReport = Callable[[Any, dict[str, Any], bool], None]
"""Receives (model, metrics, with_weights) after every epoch: ``with_weights`` when the epoch
improved the score or ends a rung, so the model's state must go along."""


def train_epochs(config: dict[str, Any], report: EpochReport | None = None) -> float:
    """The trial's epochs; returns the validation MAE in mm of its best-scoring epoch.

    ``report`` defaults to Ray Tune's (a checkpoint with the weights where asked); the
    replay benchmark passes its own to run a trial outside Tune.
    """
    report = report or functools.partial(_report_to_tune, config=config)
    from edgeloop.trainer.model import TARGET_SCALE_MM, build_model, compile_model
    from edgeloop.trainer.snapshot import mapped_member

    with np.load(config["arrays_path"]) as data:  # npz members load one by one: no images
        labels, split = data["labels"], data["split"]
        worlds = data["world"] if "world" in data.files else None  # older snapshots: none
    images = mapped_member(Path(config["arrays_path"]), "images")
    # float16 (float32 in older archives): the snapshot's frames, already resized as the model
    # would (snapshot module doc); uint8: raw frames of a format 1 archive, resized by the
    # model as when served
    input_dtype = images.dtype.name
    targets = (labels / TARGET_SCALE_MM).astype("float32")
    batch = int(config["batch_size"])
    train = Batches(images, targets, np.flatnonzero(split == 0), batch, True, int(config["seed"]),
                    worlds, int(config.get("epoch_frames", 0)))
    # the holdout (split 2) is never read by a trial
    val_rows = np.flatnonzero(split == 1)
    val = Batches(images, targets, val_rows, batch, False, 0)
    val_worlds = worlds[val_rows] if worlds is not None else np.zeros(len(val_rows), np.int64)
    model = build_model(
        config["architecture"],
        int(config["filters"]),
        float(config["dropout"]),
        int(config["dense_units"]),
        input_dtype,
    )
    reference: dict[int, float] = {}
    if config.get("init_weights"):  # a warm start: fine-tune a registered version
        model.load_weights(config["init_weights"])
        # what the gate will hold the candidate to, per world, before any epoch moves it
        reference = forgetting.mae_by_world(_val_errors_mm(model, val, targets[val_rows]),
                                            val_worlds)
    compile_model(model, float(config["learning_rate"]))
    done, best = _resume(model)
    rungs = set(config.get("rung_epochs", ()))
    for epoch in range(done + 1, int(config["epochs"]) + 1):
        loss = train_epoch(model, train)
        errors = _val_errors_mm(model, val, targets[val_rows])
        val_mae_mm = float(np.abs(errors).mean()) if len(errors) else math.inf
        penalty = forgetting.penalty_mm(forgetting.mae_by_world(errors, val_worlds), reference)
        metrics = {
            "epoch": epoch,
            METRIC: val_mae_mm,
            SCORE: val_mae_mm + penalty,
            "val_forgetting_mm": penalty,
            "loss": loss,
            "train_mae_mm": loss * TARGET_SCALE_MM,
        }
        improved = metrics[SCORE] < best.score
        if improved:
            best = Best(metrics[SCORE], val_mae_mm)
        # at a rung the trial may pause: its state goes along
        report(model, {**metrics, **best.metrics()}, improved or epoch in rungs)
    return best.val_mae_mm


def _report_to_tune(model: Any, metrics: dict[str, Any], with_weights: bool,
                    config: dict[str, Any]) -> None:
    if with_weights:
        _report_with_weights(model, metrics, config)
    else:
        tune.report(metrics)


@dataclass(frozen=True)
class Best:
    """A trial's best epoch so far: its score and its validation MAE."""

    score: float = math.inf
    val_mae_mm: float = math.inf

    def metrics(self) -> dict[str, float]:
        return {"best_val_score_mm": self.score, "best_val_mae_mm": self.val_mae_mm}


def _val_errors_mm(model: Any, val: Any, targets: Any) -> Any:
    """Signed errors in mm of ``model`` on the validation batches (rows in order)."""
    from edgeloop.trainer.model import TARGET_SCALE_MM

    predicted = predict(model, val)
    return (predicted - targets) * TARGET_SCALE_MM


def _resume(model: Any) -> tuple[int, Best]:
    """Epochs done and the best epoch so far: (0, none), or the checkpoint's.

    A trial resumed after a pause at a rung, or started again by Tune after its Ray worker
    died (``TRIAL_RETRIES``), gets its last checkpoint (its rung's, or its best epoch so
    far): it goes on from there, optimizer state included, instead of from zero.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0, Best()
    with checkpoint.as_directory() as folder:
        model.load_weights(os.path.join(folder, WEIGHTS_FILE))
        _load_optimizer(model, Path(folder, OPTIMIZER_FILE))
        progress = json.loads(Path(folder, PROGRESS_FILE).read_text())
    log.info("trial resumed from its checkpoint", extra=progress)
    val_mae = float(progress["best_val_mae_mm"])
    return int(progress["epoch"]), Best(float(progress.get("best_val_score_mm", val_mae)),
                                        val_mae)


def _load_optimizer(model: Any, path: Path) -> None:
    """The optimizer's moments and step count as checkpointed (older checkpoints: none)."""
    if not path.exists():
        return
    with np.load(path) as saved:
        store = {name: saved[name] for name in saved.files}
    model.optimizer.build(model.trainable_variables)
    model.optimizer.load_own_variables(store)


def _report_with_weights(model: Any, metrics: dict[str, Any], config: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        model.save_weights(os.path.join(folder, WEIGHTS_FILE))
        optimizer: dict[str, Any] = {}
        model.optimizer.save_own_variables(optimizer)
        np.savez(Path(folder, OPTIMIZER_FILE), **optimizer)
        Path(folder, "config.json").write_text(json.dumps(config, sort_keys=True, default=str))
        Path(folder, PROGRESS_FILE).write_text(json.dumps(
            {key: metrics[key] for key in ("epoch", "best_val_mae_mm", "best_val_score_mm")}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _paused(sweep_id: str, trial_id: str, epoch: int, cpus: float) -> None:
    """The scheduler paused a trial at a rung (a module function: Tune pickles schedulers)."""
    _PAUSED.setdefault(sweep_id, set()).add(trial_id)
    if hooks := _HOOKS.get(sweep_id):
        hooks.trial_paused(trial_id, epoch, cpus)


class SweepStopper(tune.Stopper):
    """Stops every trial of a sweep once its cancel event is set."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        event = _CANCEL.get(self.sweep_id)
        return bool(event and event.is_set())


class HooksCallback(tune.Callback):
    """Forwards trial life-cycle events to the sweep's :class:`TrialHooks`."""

    def __init__(self, sweep_id: str) -> None:
        self.sweep_id = sweep_id

    def _hooks(self) -> TrialHooks | None:
        return _HOOKS.get(self.sweep_id)

    def _spans(self) -> TrialSpans | None:
        # Tune pickles its callbacks with the experiment state: spans live outside them.
        return _SPANS.get(self.sweep_id)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        paused = _PAUSED.get(self.sweep_id, set())
        resumed = trial.trial_id in paused
        paused.discard(trial.trial_id)
        if spans := self._spans():
            spans.started(trial.trial_id, trial.config, resumed)
        if hooks := self._hooks():
            params = {k: v for k, v in trial.config.items() if k in _FIELDS}
            hooks.trial_started(trial.trial_id, params, resumed)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if hooks := self._hooks():
            metrics = {
                k: float(result[k])
                for k in (METRIC, SCORE, "val_forgetting_mm", "loss", "train_mae_mm",
                          "best_val_mae_mm")
                if k in result
            }
            hooks.epoch(
                trial.trial_id, int(result.get("epoch", result["training_iteration"])), metrics
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if spans := self._spans():
            spans.ended(trial.trial_id, "TERMINATED", trial.last_result or {})
        if hooks := self._hooks():
            hooks.trial_finished(trial.trial_id, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if spans := self._spans():
            spans.ended(trial.trial_id, "ERROR", trial.last_result or {})
        if hooks := self._hooks():
            hooks.trial_finished(trial.trial_id, "ERROR")



@dataclass
class SweepPlan:
    """Everything the Tuner needs for one sweep."""

    sweep_id: str
    arrays_path: Path
    values: dict[str, list[Any]]
    num_trials: int
    resources: TrialResources
    seed: int
    storage_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)
    """Config every trial gets as is (``init_weights`` of a warm start)."""
    precision: str = "float32"
    """Training arithmetic: ``float32``, ``bfloat16`` or ``auto`` (precision.resolve_precision)."""
    epoch_frames: int = 0
    """Training rows per epoch at most, drawn afresh each epoch (0: every row)."""


def cancel(sweep_id: str) -> None:
    """Ask the running Tuner of ``sweep_id`` to stop all its trials."""
    _CANCEL.setdefault(sweep_id, threading.Event()).set()


def run_sweep(plan: SweepPlan, hooks: TrialHooks) -> TuneOutcome:
    """Run the Tuner to the end (blocking; call from a worker thread)."""
    event = _CANCEL.setdefault(plan.sweep_id, threading.Event())
    _HOOKS[plan.sweep_id] = hooks
    _SPANS[plan.sweep_id] = TrialSpans()  # in the sweep's thread: children of its span
    try:
        results = _tuner(plan).fit()
        if event.is_set():
            raise Cancelled("the sweep was cancelled")
        return _best(results)
    finally:
        _HOOKS.pop(plan.sweep_id, None)
        _CANCEL.pop(plan.sweep_id, None)
        _SPANS.pop(plan.sweep_id).close()
        _PAUSED.pop(plan.sweep_id, None)


def _tuner(plan: SweepPlan) -> tune.Tuner:
    space = {
        **param_space(plan.values),
        "arrays_path": str(plan.arrays_path),
        "seed": plan.seed,
        "tf_threads": plan.resources.tf_threads,
        "precision": plan.precision,
        "epoch_frames": plan.epoch_frames,
        # The sweep's trace context and span exporters, so each trial's span joins it
        # wherever its worker runs (trial_tracing).
        **trace_config(),
        **plan.extra,
    }
    rungs = rung_epochs(max(plan.values["epochs"]), GRACE_EPOCHS, REDUCTION_FACTOR)
    space["rung_epochs"] = rungs
    scheduler = SynchronousHalving(rungs, REDUCTION_FACTOR,
                                   on_pause=functools.partial(_paused, plan.sweep_id),
                                   cpus=plan.resources.budget(plan.num_trials))
    return tune.Tuner(
        tune.with_resources(train_trial, {"cpu": plan.resources.cpus_per_trial}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=SCORE,
            mode="min",
            scheduler=scheduler,
            num_samples=plan.num_trials,
            # A finished or stopped trial's worker runs the next one: no new process, no
            # second TensorFlow import (seconds of CPU per trial on a 2-core node).
            reuse_actors=True,
            # concurrency is enforced by the CPUs each trial reserves (fit_resources):
            # Tune ignores max_concurrent_trials with a points-to-evaluate generator
            search_alg=BasicVariantGenerator(
                points_to_evaluate=sample_configs(plan.values, plan.num_trials, plan.seed)
            ),
        ),
        run_config=tune.RunConfig(
            name=plan.sweep_id,
            storage_path=str(plan.storage_dir),
            stop=SweepStopper(plan.sweep_id),
            callbacks=[HooksCallback(plan.sweep_id)],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=SCORE, checkpoint_score_order="min"
            ),
        ),
    )


def _best(results: tune.ResultGrid) -> TuneOutcome:
    try:
        best = results.get_best_result(SCORE, "min", scope="all", filter_nan_and_inf=True)
    except RuntimeError as exc:
        errors = [str(r.error).splitlines()[0] for r in results if r.error]
        raise EdgeloopError(f"no trial reported {SCORE}: {errors[:1] or exc}") from exc
    checkpoint = best.get_best_checkpoint(SCORE, "min")
    if checkpoint is None:
        raise EdgeloopError(f"best trial {best.metrics.get('trial_id')} has no checkpoint")
    metrics = best.metrics_dataframe
    return TuneOutcome(
        trial_id=str(best.metrics["trial_id"]),
        config={k: best.config[k] for k in _FIELDS},
        val_mae_mm=float(metrics.loc[metrics[SCORE].idxmin(), METRIC]),
        checkpoint_dir=Path(checkpoint.path),
    )
