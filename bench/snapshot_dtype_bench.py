"""What storing a snapshot's pre-resized frames as float16 changes in a trained model's answers.

The trainer pre-resizes every frame of a snapshot once, as the model's own Resizing layer
does, and stores the result as float16 (trainer README, "The model and its serving
signature"); the served model resizes the raw frame itself, in float32. This bench takes
the trials a demo trained (``./run demo`` leaves ``.edgeloop/``): for each sweep, the last
checkpoint it wrote (of the trial that trained last), run on its snapshot's holdout frames
(raw, as robots send them)
twice — resized exactly (float32, what serving computes) and resized then rounded to
float16 (what a trial reads) — and prints |difference| mean, p99 and max in mm, and the
MAE against the range sensor both ways.

    uv run python bench/snapshot_dtype_bench.py        # --state .edgeloop --sweeps 4
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from edgeloop.trainer import model as M
from edgeloop.trainer.model_input import resize_frames
from edgeloop.trainer.snapshot import IMAGES_DTYPE, mapped_member


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, default=Path(".edgeloop"),
                        help="a demo's state folder (default .edgeloop)")
    parser.add_argument("--sweeps", type=int, default=4,
                        help="the newest N sweeps with a finished trial (default 4)")
    return parser.parse_args()


def last_checkpoints(state: Path, count: int) -> list[tuple[str, Path]]:
    """(sweep id, the trial folder with the newest checkpoint) of the newest ``count`` sweeps."""
    found = []
    for sweep in (state / "trainer" / "sweeps").iterdir():
        trials = [t for t in (sweep / "ray").glob("*/train_trial_*")
                  if list(t.glob("checkpoint_*/model.weights.h5"))]
        if trials:
            newest = max(trials, key=lambda t: max(c.stat().st_mtime
                                                   for c in t.glob("checkpoint_*")))
            found.append((sweep.name, newest))
    found.sort(key=lambda pair: pair[1].stat().st_mtime)
    return found[-count:]


def predict_mm(model: object, images: np.ndarray) -> np.ndarray:
    chunks = [model.predict_on_batch(images[i:i + 64]) for i in range(0, len(images), 64)]
    return np.concatenate(chunks).reshape(-1) * M.TARGET_SCALE_MM


def compare(state: Path, sweep_id: str, trial: Path) -> str:
    config = json.loads((trial / "params.json").read_text())
    weights = sorted(trial.glob("checkpoint_*/model.weights.h5"))[-1]
    shape = (config["architecture"], int(config["filters"]), float(config["dropout"]),
             int(config["dense_units"]))
    exact_model = M.build_model(*shape, input_dtype="float32")
    stored_model = M.build_model(*shape, input_dtype=IMAGES_DTYPE.__name__)
    for model in (exact_model, stored_model):
        model.load_weights(weights)
    arrays = state / "objects" / "trainer" / "sweeps" / sweep_id / "arrays.npz"
    with np.load(arrays) as data:
        labels = data["labels"][data["split"] == 2]
    exact = resize_frames(np.asarray(mapped_member(arrays, "holdout_frames")))
    on_exact = predict_mm(exact_model, exact)
    on_stored = predict_mm(stored_model, exact.astype(IMAGES_DTYPE))
    difference = np.abs(on_stored - on_exact)
    return (f"| {sweep_id} | {len(labels)} | {difference.mean():.4f} / "
            f"{np.quantile(difference, 0.99):.4f} / {difference.max():.4f} | "
            f"{np.abs(on_exact - labels).mean():.3f} / {np.abs(on_stored - labels).mean():.3f} |")


def main() -> None:
    args = parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| sweep | holdout frames | float16 − exact, mean / p99 / max mm | "
          "MAE exact / float16 (mm) |")
    print("|---|---|---|---|")
    for sweep_id, trial in last_checkpoints(args.state, args.sweeps):
        print(compare(args.state, sweep_id, trial), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
