"""Is the simulated world learnable, and does drift hurt? A small CNN answers both.

Trains a three-layer CNN on frames of one scenario (default ``beige``) labelled with the
simulated sensor, then reports its MAE on held-out frames of that scenario and of the
drifted ones. Not a test (it takes minutes on a laptop CPU): a reproducible check of the
simulator's faithfulness, recorded in the member README.

    uv run python edge_client/tools/learnability.py [--train beige] [--frames 2000]

``--floors`` asks another question: how low can the error go in each world? It trains the
trainer's own ``thesis`` network on plenty of one world (``--frames``) and measures it on
fresh frames of that world, against the sensor (what the platform's MAE is) and against
the true distance, beside the sensor's own error. Each world's floor is what "MAE after
retraining" can at best reach there.

    uv run python edge_client/tools/learnability.py --floors [--frames 2000] [--epochs 15]

Needs TensorFlow/Keras (present in the workspace environment, not an edge dependency).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from edgeloop.edge_client import render_dataset  # noqa: E402
from edgeloop.edge_client.scene.render import decode_jpeg  # noqa: E402


def load_raw(scenario: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw frames uint8 [n, 240, 320, 3], their sensor labels and the true distances (mm)."""
    images, labels, truth = [], [], []
    for jpeg, sensor_mm, true_mm in render_dataset(scenario, n, seed=seed):
        if sensor_mm is None:
            continue
        images.append(decode_jpeg(jpeg))
        labels.append(sensor_mm)
        truth.append(true_mm)
    return np.stack(images), np.asarray(labels, "float32"), np.asarray(truth, "float32")


def world_floor(scenario: str, frames: int, epochs: int, seed: int) -> dict[str, float]:
    """The ``thesis`` network trained on ``frames`` of one world, measured on 300 fresh ones."""
    from edgeloop.trainer.model import (  # noqa: PLC0415 - TensorFlow only for this mode
        TARGET_SCALE_MM,
        build_model,
        compile_model,
    )

    x, y, _ = load_raw(scenario, frames, seed=seed)
    xe, ye, te = load_raw(scenario, 300, seed=seed + 1000)
    model = build_model("thesis")
    compile_model(model, 1e-3)
    model.fit(x, y / TARGET_SCALE_MM, epochs=epochs, batch_size=32, verbose=0)
    predicted = model.predict(xe, verbose=0).ravel() * TARGET_SCALE_MM
    return {"vs_sensor": float(np.mean(np.abs(predicted - ye))),
            "vs_truth": float(np.mean(np.abs(predicted - te))),
            "sensor": float(np.mean(np.abs(ye - te))),
            "mean_mm": float(np.mean(te)), "frames": float(len(y))}


def print_floors(scenarios: list[str], frames: int, epochs: int) -> None:
    """One floor per world, and each world's floor against the first one's."""
    print(f"each world: the thesis network trained on {frames} of its frames ({epochs} epochs), "
          "MAE on 300 fresh ones")
    print(f"{'world':14s} {'vs sensor':>10s} {'vs truth':>9s} {'sensor':>7s} {'mean mm':>8s} "
          f"{'x first':>8s}")
    first = 0.0
    for i, scenario in enumerate(scenarios):
        floor = world_floor(scenario, frames, epochs, seed=1 + 10 * i)
        first = first or floor["vs_sensor"]
        print(f"{scenario:14s} {floor['vs_sensor']:8.2f} mm {floor['vs_truth']:6.2f} mm "
              f"{floor['sensor']:4.2f} mm {floor['mean_mm']:8.0f} "
              f"{floor['vs_sensor'] / first:7.2f}x", flush=True)


def load(scenario: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames at the model's input size (75x100, like the trainer) and their sensor labels."""
    images, labels = [], []
    for jpeg, sensor_mm, _ in render_dataset(scenario, n, seed=seed):
        if sensor_mm is None:
            continue  # no label, as on the real car
        images.append(cv2.resize(decode_jpeg(jpeg), (100, 75), interpolation=cv2.INTER_AREA))
        labels.append(sensor_mm)
    return np.stack(images).astype("float32") / 255.0, np.asarray(labels, "float32")


def small_cnn():  # noqa: ANN201 - keras model
    """Three conv blocks and a dense head: deliberately small, like the thesis model."""
    import keras  # noqa: PLC0415
    from keras import layers  # noqa: PLC0415

    model = keras.Sequential([
        keras.Input((75, 100, 3)),
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPool2D(),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPool2D(),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPool2D(),
        layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), "mae")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="beige")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--evaluate", nargs="+",
                        default=["beige", "beige-distant", "green", "green-angle", "red"])
    parser.add_argument("--floors", action="store_true",
                        help="each world's own floor: train on it, measure on it")
    args = parser.parse_args()
    if args.floors:
        print_floors(args.evaluate, args.frames, args.epochs)
        return
    x, y = load(args.train, args.frames, seed=1)
    model = small_cnn()
    model.fit(x, y / 100.0, epochs=args.epochs, batch_size=32, verbose=0, validation_split=0.1)
    print(f"trained on {len(y)} frames of {args.train}")
    for i, scenario in enumerate(args.evaluate):
        xe, ye = load(scenario, 300, seed=100 + i)
        predicted = model.predict(xe, verbose=0).ravel() * 100.0
        print(f"  {scenario:14s} MAE {np.mean(np.abs(predicted - ye)):6.1f} mm  ({len(ye)} frames)")


if __name__ == "__main__":
    main()
