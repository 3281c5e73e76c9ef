"""Is the simulated world learnable, and does drift hurt? A small CNN answers both.

Trains a three-layer CNN on frames of one scenario (default ``beige``) labelled with the
simulated sensor, then reports its MAE on held-out frames of that scenario and of the
drifted ones. Not a test (it takes minutes on a laptop CPU): a reproducible check of the
simulator's faithfulness, recorded in the member README.

    uv run python edge_client/tools/learnability.py [--train beige] [--frames 2000]

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
    args = parser.parse_args()
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
