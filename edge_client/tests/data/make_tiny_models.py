"""Regenerate tiny_v1.tflite and tiny_v2.tflite: the serving contract in a few kB.

Each version resizes the frame to 75x100, rescales it to [0, 1] and answers
``bias + 100 * mean`` mm (v1: bias 1000, v2: bias 2000), so an answer names its version.
Converted with TensorFlow's TFLite converter like the registry's export. The files are
committed so the edge client's tests (and a Raspberry Pi) need no TensorFlow.

Usage: ``uv run python edge_client/tests/data/make_tiny_models.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent


class Tiny(tf.Module):
    """The serving signature of CONTRIBUTING.md with one variable."""

    def __init__(self, bias_mm: float) -> None:
        super().__init__()
        self.bias = tf.Variable(np.float32(bias_mm))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.image.resize(tf.cast(image, tf.float32), (75, 100)) / 255.0
        return {"distance_mm": tf.reduce_mean(x, axis=[1, 2, 3]) * 100.0 + self.bias}


def main() -> None:
    """Write both versions beside this script."""
    for version, bias in (("1", 1000.0), ("2", 2000.0)):
        module = Tiny(bias)
        with tempfile.TemporaryDirectory() as tmp:
            tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
            converter = tf.lite.TFLiteConverter.from_saved_model(
                tmp, signature_keys=["serving_default"])
            (HERE / f"tiny_v{version}.tflite").write_bytes(converter.convert())


if __name__ == "__main__":
    main()
