"""Tiny models that follow the serving contract (CONTRIBUTING.md, "Model serving signature").

A version resizes the frame to 75x100, rescales it to [0, 1] and answers
``bias_mm + 100 * mean`` mm, so an answer in ``bias_mm + [0, 100]`` names its version.
TensorFlow is imported on first use: members without it can import this package.
"""

from __future__ import annotations

from pathlib import Path


def save_tiny_model(folder: Path, bias_mm: float) -> Path:
    """Write a SavedModel with the serving signature to ``folder``; returns ``folder``."""
    import numpy as np
    import tensorflow as tf

    class TinyModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = tf.Variable(np.float32(bias_mm))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                    name="image")])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            x = tf.image.resize(tf.cast(image, tf.float32), (75, 100)) / 255.0
            return {"distance_mm": tf.reduce_mean(x, axis=[1, 2, 3]) * 100.0 + self.bias}

    module = TinyModel()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder
