"""Replay a demo's drift retrains with other training settings, scored on what came next.

A drift retrain learns its new world from the first few runs; how well it does shows on the
frames the robots send after it. A demo keeps both: the first retrain's snapshot and, for
the same world, a later one (the consolidation's, three times the frames). This replays
each first retrain's trials outside Ray Tune, from the same snapshot, seed, warm start and
configurations as the sweep drew them, once per epoch budget, and scores the trial the
sweep's synchronous halving would pick on the new world's frames of the later snapshot
that the first one did not hold (never seen by any trial) and on the old worlds' holdout.

Every trial runs all its epochs here (the halving is emulated from their scores), so the
bench also prints each trial's own figures. Trials run one at a time with both cores.

``--sweep ID`` replays that sweep (a later retrain of a world) instead; its world's frames
carried from the world's earlier snapshots keep their split. ``--splits drawn,by-error,random``
replays each retrain with the split its sweep drew, and with the new world's runs drawn
again as the trainer draws them now (stratified by the error of the version that served
them: ``snapshot.assign_splits_by_error``) and at random, as it drew them before.

Run after a demo (its ``.edgeloop/`` or a copy of its ``objects/`` and ``trainer/``):
``uv run python bench/retrain_replay.py [--work-dir .edgeloop] [--epochs 6,12] [--trials 2]
[--learning-rates 1e-3] [--train-new-validation] [--sweep ID] [--splits drawn,by-error,random]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeloop.trainer import snapshot, tune
from edgeloop.trainer.halving import rung_epochs
from edgeloop.trainer.model import (
    TARGET_SCALE_MM,
    build_model,
    set_tf_threads,
    set_training_precision,
)
from edgeloop.trainer.snapshot import mapped_member
from edgeloop.trainer.warm_start import SHAPE_KEYS


@dataclass
class Retrain:
    """A world's first drift retrain and the frames of that world it never saw."""

    manifest: dict[str, Any]
    arrays_path: Path
    arrays: dict[str, np.ndarray]
    new_world: int
    later_images: np.ndarray
    later_labels: np.ndarray
    weights: Path
    carried_ids: frozenset[str] = frozenset()
    """The new world's frames that earlier snapshots of it held: their split is inherited."""
    splits: str = "drawn"

    @property
    def name(self) -> str:
        return self.manifest["worlds"][self.new_world]


@dataclass
class TrialRun:
    """One trial of a replay: its configuration, score per epoch, best-scoring weights."""

    config: dict[str, Any]
    scores: list[float]
    best_weights: list[np.ndarray]
    seconds: float

    def best_by(self, epoch: int) -> float:
        """The best score of the first ``epoch`` epochs (what a rung ranks by)."""
        return min(self.scores[:epoch])


def drift_retrains(work_dir: Path, sweep: str = "") -> list[Retrain]:
    """Every world's first drift retrain in ``work_dir`` that a later snapshot followed (or
    the retrain of sweep ``sweep``, with the world's largest snapshot as the later one)."""
    root = work_dir / "objects" / "trainer" / "sweeps"
    worlds: dict[tuple[str, ...], list[tuple[dict[str, Any], Path]]] = {}
    manifests: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("*/manifest.json")):
        manifest = json.loads(path.read_text())
        manifests[path.parent.name] = manifest
        selection = manifest.get("selection", {})
        if selection.get("start_time") and selection.get("include_snapshots_of"):
            key = (*selection.get("deployments", []), selection["start_time"])
            worlds.setdefault(key, []).append((manifest, path.parent))
    found = []
    for snapshots in worlds.values():
        if len(snapshots) < 2:
            continue
        snapshots.sort(key=lambda item: len(item[0]["observations"]))
        chosen = next((i for i, (m, _) in enumerate(snapshots) if m["snapshot_id"] == sweep),
                      None if sweep else 0)
        if chosen is None or chosen == len(snapshots) - 1:
            continue
        (first, folder), (later, later_folder) = snapshots[chosen], snapshots[-1]
        weights = work_dir / "trainer" / "sweeps" / first["snapshot_id"] / "warm_start" / "weights"
        carried = frozenset(e["observation_id"]
                            for included in first["selection"]["include_snapshots_of"]
                            for e in manifests.get(included, {}).get("observations", []))
        if weights.exists():
            found.append(_retrain(first, folder, later, later_folder, weights, carried))
    return sorted(found, key=lambda r: r.manifest["selection"]["start_time"])


def _retrain(first: dict[str, Any], folder: Path, later: dict[str, Any], later_folder: Path,
             weights: Path, carried: frozenset[str]) -> Retrain:
    arrays_path = folder / "arrays.npz"
    arrays = _arrays(arrays_path)
    new_world = max(range(len(first["worlds"])), key=lambda i: first["worlds"][i].split("@")[-1])
    seen = {e["observation_id"] for e in first["observations"]}
    later_arrays = _arrays(later_folder / "arrays.npz")
    index = later["worlds"].index(first["worlds"][new_world])
    rows = [i for i, e in enumerate(later["observations"])
            if later_arrays["world"][i] == index and e["observation_id"] not in seen]
    return Retrain(first, arrays_path, arrays, new_world,
                   later_arrays["images"][rows], later_arrays["labels"][rows], weights, carried)


ROW_MEMBERS = ("labels", "split", "world")
"""A snapshot archive's members with a value per row, beside its ``images``."""


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """A snapshot archive's labels, split and worlds, and its images mapped, not read."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in ROW_MEMBERS}
    return {**arrays, "images": mapped_member(path, "images")}


def replay(retrain: Retrain, epochs: int, trials: int, precision: str,
           learning_rates: list[float] | None = None) -> list[TrialRun]:
    """The sweep's trials at ``epochs`` (and ``learning_rates``), each trained to the end."""
    import keras

    shape = json.loads((retrain.weights / "model_config.json").read_text())
    values = {**tune.DEFAULTS, "epochs": [epochs], **{k: [shape[k]] for k in SHAPE_KEYS}}
    if learning_rates:
        values["learning_rate"] = learning_rates
    seed = int(retrain.manifest["seed"])
    runs = []
    for config in tune.sample_configs(values, trials, seed):
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        scores: list[float] = []
        best: list[list[np.ndarray]] = []

        def report(model: Any, metrics: dict[str, Any], with_weights: bool,
                   scores: list[float] = scores, best: list[list[np.ndarray]] = best) -> None:
            scores.append(float(metrics[tune.SCORE]))
            if with_weights:  # no rungs here: only an improved epoch comes with weights
                best[:] = [model.get_weights()]

        started = time.perf_counter()
        # the trial maps the snapshot's own (uncompressed) archive, as in the sweep
        tune.train_epochs({**config, "arrays_path": str(retrain.arrays_path), "seed": seed,
                           "tf_threads": 2, "precision": precision, "epoch_frames": 0,
                           "rung_epochs": [],
                           "init_weights": str(retrain.weights / "model.weights.h5")}, report)
        runs.append(TrialRun(config, scores, best[0], time.perf_counter() - started))
    return runs


def with_new_validation_trained(retrain: Retrain, folder: Path) -> Retrain:
    """``retrain`` with its new world's validation frames also trained on (copies of them
    added as training rows): what a first retrain would gain from the validation run, whose
    score, replays showed, barely tells two trials apart."""
    rows = np.flatnonzero((retrain.arrays["split"] == 1)
                          & (retrain.arrays["world"] == retrain.new_world))
    with np.load(retrain.arrays_path) as data:
        members = {name: data[name] for name in data.files  # holdout_frames, as they are
                   if name not in (*ROW_MEMBERS, "images")}
    extended = {name: np.concatenate([retrain.arrays[name], retrain.arrays[name][rows]])
                for name in ("labels", "world")}
    extended["split"] = np.concatenate([retrain.arrays["split"],
                                        np.zeros(len(rows), retrain.arrays["split"].dtype)])
    images = np.concatenate([retrain.arrays["images"], retrain.arrays["images"][rows]])
    path = folder / f"{retrain.manifest['snapshot_id']}.npz"
    np.savez(path, **members, **extended, images=images)  # uncompressed: mapped by the trial
    return Retrain(retrain.manifest, path, _arrays(path), retrain.new_world,
                   retrain.later_images, retrain.later_labels, retrain.weights,
                   retrain.carried_ids)


SPLITS = ("drawn", "by-error", "strata", "random")
"""How a replay's new-world runs are split: as the sweep drew them, or drawn again."""


def with_splits_drawn_again(retrain: Retrain, folder: Path, how: str) -> Retrain:
    """``retrain`` with its new world's runs (those no earlier snapshot held) drawn again:
    ``by-error`` as the trainer draws them now, stratified by the serving version's error
    (the manifest's ``error_mm``; for a snapshot from before it, the error of the sweep's
    warm start, the version that served them), ``strata`` the same without keeping the two
    ends for training, ``random`` as it drew them before."""
    entries = [dict(e) for e in retrain.manifest["observations"]]
    new = np.flatnonzero(retrain.arrays["world"] == retrain.new_world)
    if how in ("by-error", "strata") and any("error_mm" not in entries[row] for row in new):
        for row, error in zip(new, _warm_start_errors(retrain, new), strict=True):
            entries[row]["error_mm"] = error
    for row in new:
        if how == "random":
            entries[row].pop("error_mm", None)
        if entries[row]["observation_id"] not in retrain.carried_ids:
            entries[row]["split"] = ""
    drawn, _ = snapshot.split_by_unit(entries, int(retrain.manifest["seed"]),
                                      train_ends=how != "strata")
    split = np.array([snapshot.SPLITS.index(part) for part in drawn], np.int8)
    with np.load(retrain.arrays_path) as data:
        members = {name: data[name] for name in data.files if name not in ("images", "split")}
    path = folder / f"{retrain.manifest['snapshot_id']}.{how}.npz"
    # uncompressed: mapped by the trial; holdout_frames stay as drawn (no trial reads them)
    np.savez(path, **members, split=split, images=retrain.arrays["images"])
    return Retrain(retrain.manifest, path, _arrays(path), retrain.new_world,
                   retrain.later_images, retrain.later_labels, retrain.weights,
                   retrain.carried_ids, how)


def _warm_start_errors(retrain: Retrain, rows: np.ndarray) -> list[float]:
    """The signed error (mm) of the sweep's warm start on ``rows`` of the snapshot."""
    shape = json.loads((retrain.weights / "model_config.json").read_text())
    served = _model({**shape, "dropout": 0.0}, None)
    served.load_weights(retrain.weights / "model.weights.h5")
    predicted = served.predict(np.asarray(retrain.arrays["images"][rows]), batch_size=256,
                               verbose=0).reshape(-1) * TARGET_SCALE_MM
    return [float(p - label) for p, label in zip(predicted, retrain.arrays["labels"][rows],
                                                 strict=True)]


def halving_pick(runs: list[TrialRun], epochs: int) -> tuple[TrialRun, int]:
    """The trial the sweep's halving keeps to the end, and the sweep's trial-epochs."""
    live, spent, done = list(runs), 0, 0
    for rung in rung_epochs(epochs, tune.GRACE_EPOCHS, tune.REDUCTION_FACTOR):
        spent += len(live) * (rung - done)
        live = sorted(live, key=lambda run: run.best_by(rung))
        live, done = live[:max(1, len(live) // tune.REDUCTION_FACTOR)], rung
    spent += len(live) * (epochs - done)
    return min(live, key=lambda run: run.best_by(epochs)), spent


def _model(config: dict[str, Any], weights: list[np.ndarray] | None) -> Any:
    """A model of ``config``'s shape on pre-resized frames, with ``weights`` when given."""
    model = build_model(config["architecture"], int(config["filters"]), float(config["dropout"]),
                        int(config["dense_units"]), "float32")
    if weights is not None:
        model.set_weights(weights)
    return model


def mae_mm(config: dict[str, Any], weights: list[np.ndarray], images: np.ndarray,
           labels: np.ndarray) -> float:
    """MAE in mm of a model of ``config``'s shape with ``weights`` on pre-resized frames."""
    model = _model(config, weights)
    predicted = model.predict(images, batch_size=256, verbose=0).reshape(-1) * TARGET_SCALE_MM
    return float(np.abs(predicted - labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path(".edgeloop"),
                        help="a demo's work folder (objects/ and trainer/ are read)")
    parser.add_argument("--epochs", default="6,12",
                        help="epoch budgets to replay, comma-separated (default 6,12)")
    parser.add_argument("--trials", type=int, default=2,
                        help="trials per sweep, as EDGELOOP_DRIFT_RETRAIN_TRIALS (default 2)")
    parser.add_argument("--precision", default="auto", help="as EDGELOOP_TRAIN_PRECISION")
    parser.add_argument("--learning-rates", default="",
                        help="learning rates to draw from, comma-separated (default: the "
                             "trainer's search space)")
    parser.add_argument("--train-new-validation", action="store_true",
                        help="also train on the new world's validation frames (they stay "
                             "in the validation too)")
    parser.add_argument("--sweep", default="",
                        help="replay this sweep's retrain (not each world's first) against the "
                             "world's largest snapshot")
    parser.add_argument("--splits", default="drawn",
                        help="drawn (the sweep's split), by-error (the new world's runs drawn "
                             "again by the serving version's error, as the trainer does now), "
                             "strata (the same without the two ends kept for training), "
                             "random (drawn again at random, as it did before); "
                             "comma-separated")
    args = parser.parse_args()
    retrains = drift_retrains(args.work_dir, args.sweep)
    if not retrains:
        raise SystemExit(f"no drift retrain with a later snapshot of its world in {args.work_dir}"
                         + (f" for sweep {args.sweep}" if args.sweep else ""))
    variants = args.splits.split(",")
    if not set(variants) <= set(SPLITS):
        parser.error(f"--splits: some of {', '.join(SPLITS)}, got {args.splits}")
    if set(variants) - {"drawn"} and args.train_new_validation:
        parser.error("--splits other than drawn draw the manifest's runs again; the copied "
                     "validation rows of --train-new-validation have no manifest entry")
    set_tf_threads(2)
    with tempfile.TemporaryDirectory(prefix="edgeloop-replay-") as folder:
        if args.train_new_validation:
            retrains = [with_new_validation_trained(r, Path(folder)) for r in retrains]
        retrains = [r if how == "drawn" else with_splits_drawn_again(r, Path(folder), how)
                    for r in retrains for how in variants]
        print_replays(retrains, args)


def print_replays(retrains: list[Retrain], args: argparse.Namespace) -> None:
    """Replay every retrain at every epoch budget; one table row each."""
    rates = [float(rate) for rate in args.learning_rates.split(",") if rate]
    precision = set_training_precision(args.precision)
    extra = "; the new world's validation frames trained on" if args.train_new_validation else ""
    print(f"{len(retrains)} drift retrains in {args.work_dir}; {precision} trials{extra}")
    print("| world | splits | new-world frames train/val/holdout | unseen frames | epochs "
          "| trial-epochs "
          "| picked (lr, batch, dropout) | new world unseen MAE | old worlds holdout MAE "
          "| each trial's unseen MAE (its best validation score) | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for retrain in retrains:
        split, worlds = retrain.arrays["split"], retrain.arrays["world"]
        counts = "/".join(str(int(((split == s) & (worlds == retrain.new_world)).sum()))
                          for s in (0, 1, 2))
        old = (split == 2) & (worlds != retrain.new_world)
        old_images, old_labels = retrain.arrays["images"][old], retrain.arrays["labels"][old]
        for epochs in (int(e) for e in args.epochs.split(",")):
            runs = replay(retrain, epochs, args.trials, precision, rates)
            pick, spent = halving_pick(runs, epochs)
            unseen = [mae_mm(r.config, r.best_weights, retrain.later_images,
                             retrain.later_labels) for r in runs]
            old_mae = mae_mm(pick.config, pick.best_weights, old_images, old_labels)
            each = " / ".join(f"{mae:.2f} ({run.best_by(epochs):.2f})"
                              for mae, run in zip(unseen, runs, strict=True))
            config = pick.config
            print(f"| {retrain.name} | {retrain.splits} | {counts} "
                  f"| {len(retrain.later_labels)} | {epochs} | {spent} "
                  f"| {config['learning_rate']}, {config['batch_size']}, {config['dropout']} "
                  f"| {unseen[runs.index(pick)]:.2f} | {old_mae:.2f} "
                  f"| {each} "
                  f"| {sum(r.seconds for r in runs):.0f} |", flush=True)


if __name__ == "__main__":
    main()
