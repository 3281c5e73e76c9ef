"""The Keras 3 model family: CNN regressors of the distance in mm, preprocessing inside.

Every model takes the raw camera frame (``uint8`` RGB of any size), resizes it to
75x100 (h x w) and rescales it to [0, 1] inside itself, so the robot, TF Serving and
the training loop all feed the same bytes. Training targets are ``mm / TARGET_SCALE_MM``
(numbers near 1 train better than thousands); :func:`export_saved_model` multiplies
back, so the served ``distance_mm`` is in millimetres.

Training does not pay for the resize every epoch: the snapshot stores every frame already
resized by :func:`~edgeloop.trainer.model_input.resize_frames` (the arithmetic of the very
layer the model holds, on the same float32 values, without TensorFlow), stored as float16,
and the trials build the model with ``input_dtype="float16"``. Resizing a 75x100 input to
75x100 is the identity (bilinear with half-pixel centres samples each pixel exactly), so
the network sees the numbers it computes from the raw frame when served, to within
float16's rounding (0.0625 of a level at most); ``tests/test_preresize.py`` checks both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeloop.platform.tensorflow_import import import_tensorflow

import_tensorflow()  # the trial workers' and the registration child's import: lean

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from edgeloop.trainer.model_input import (  # noqa: E402
    ARCHITECTURES,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    TARGET_SCALE_MM,
)
from edgeloop.trainer.precision import resolve_precision  # noqa: E402


def input_resizing() -> keras.layers.Resizing:
    """The resize every model starts with (:func:`~edgeloop.trainer.model_input.resize_frames`
    computes the same numbers without TensorFlow)."""
    return keras.layers.Resizing(INPUT_HEIGHT, INPUT_WIDTH)


def build_model(
    architecture: str = "thesis", filters: int = 16, dropout: float = 0.2, dense_units: int = 64,
    input_dtype: str = "uint8",
) -> keras.Model:
    """A CNN regressor: ``image`` [b, h, w, 3] -> distance / TARGET_SCALE_MM [b, 1].

    ``input_dtype`` is ``uint8`` for raw frames (export, serving) and ``float16`` (``float32``
    in older snapshots) for the snapshot's pre-resized frames (trials: a uint8 input would
    truncate them). The layers and weights are the same either way, so a trial's weights
    load into the served model.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    shape = ARCHITECTURES[architecture]
    inputs = keras.Input(shape=(None, None, 3), dtype=input_dtype, name="image")
    x = input_resizing()(keras.ops.cast(inputs, "float32"))
    x = keras.layers.Rescaling(1.0 / 255)(x)
    for block in range(shape.conv_blocks):
        for _ in range(shape.convs_per_block):
            x = keras.layers.Conv2D(filters * 2**block, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(dropout)(x)
    for _ in range(shape.dense_layers):
        x = keras.layers.Dense(dense_units, activation="relu")(x)
    # float32 whatever the training precision: bfloat16 resolves 500 mm to about 2 mm
    outputs = keras.layers.Dense(1, name="distance", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"distance_{architecture}")


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam on MAE: the metric operators read (mm) is a mean absolute error too."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mae")


def set_training_precision(precision: str) -> str:
    """Set Keras's policy for the models built next (a trial's); returns the one chosen.

    bfloat16 is Keras's ``mixed_bfloat16``: weights stay float32 (they load into the served
    float32 model unchanged), activations and gradients are bfloat16.
    """
    chosen = resolve_precision(precision)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if chosen == "bfloat16"
                                            else "float32")
    return chosen


def set_tf_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools; must run before TF executes anything in the process."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already initialised in this process (reused Ray worker): keep its pools


def export_saved_model(model: keras.Model, directory: str | Path) -> Path:
    """Write the SavedModel with the serving signature of CONTRIBUTING.md.

    ``serving_default``: ``image`` uint8 [b, h, w, 3] -> ``distance_mm`` float32 [b].
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        scaled = model(image, training=False)
        return {"distance_mm": tf.reshape(tf.cast(scaled, tf.float32), [-1]) * TARGET_SCALE_MM}

    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")],
    )
    archive.write_out(str(directory), verbose=False)
    return Path(directory)


def load_serving_function(directory: str | Path) -> Any:
    """The ``serving_default`` signature of a SavedModel (ours or the champion's)."""
    return tf.saved_model.load(str(directory)).signatures["serving_default"]


def predict_mm(serving: Any, images: Any, batch_size: int = 64) -> Any:
    """Distances in mm predicted by a serving signature for uint8 ``images`` [n, h, w, 3]."""
    out = [
        serving(image=tf.constant(images[i : i + batch_size]))["distance_mm"].numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0,), np.float32)
