"""The registration's TensorFlow half: export the best trial, measure SavedModels on the holdout.

These functions run in the sweep's child process (a
:class:`~edgeloop.platform.tensorflow_process.TensorFlowProcess`), which imports this
module, :mod:`~edgeloop.trainer.outcome` and the model family and nothing else of the
trainer: no Ray, gRPC registry client or MLflow, so the child costs TensorFlow's import and
memory only (the rest of the registration, in the trainer process, is
:mod:`~edgeloop.trainer.registration`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgeloop.trainer.outcome import WEIGHTS_FILE, TuneOutcome


@dataclass(frozen=True)
class Candidate:
    """The exported best model and its holdout evaluation."""

    saved_model_dir: Path
    holdout_mae_mm: float
    holdout_count: int
    errors: np.ndarray | None = None
    """Absolute error per holdout frame, in the snapshot's order."""


def holdout_arrays(arrays_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The holdout's raw frames (uint8, camera size: what serving gets) and labels."""
    from edgeloop.trainer.snapshot import ARRAYS_FORMAT, arrays_format, mapped_member

    with np.load(arrays_path) as data:
        mask = data["split"] == 2
        labels = data["labels"][mask]
    if arrays_format(arrays_path) >= ARRAYS_FORMAT:
        # the trials' images are pre-resized; the serving signatures get the raw frames
        return np.asarray(mapped_member(arrays_path, "holdout_frames")), labels
    # format 1: only the holdout's rows are read from disk, not the whole image array
    return np.asarray(mapped_member(arrays_path, "images")[np.flatnonzero(mask)]), labels


def holdout_errors(saved_model_dir: str | Path, arrays_path: Path) -> np.ndarray:
    """Absolute error in mm of a SavedModel on each holdout frame of a snapshot (blocking)."""
    from edgeloop.trainer.model import load_serving_function, predict_mm

    images, labels = holdout_arrays(arrays_path)
    predicted = predict_mm(load_serving_function(saved_model_dir), images)
    return np.abs(np.asarray(predicted, np.float64) - labels)


def export_candidate(outcome: TuneOutcome, arrays_path: Path, out_dir: Path) -> Candidate:
    """Rebuild the best trial's model at its best epoch, export it, measure its holdout MAE."""
    from edgeloop.trainer.model import build_model, export_saved_model

    cfg = outcome.config
    model = build_model(
        cfg["architecture"], int(cfg["filters"]), float(cfg["dropout"]), int(cfg["dense_units"])
    )
    model.load_weights(outcome.checkpoint_dir / WEIGHTS_FILE)
    saved = export_saved_model(model, out_dir / "saved_model")
    errors = holdout_errors(saved, arrays_path)
    return Candidate(saved, float(np.mean(errors)), int(len(errors)), errors)
