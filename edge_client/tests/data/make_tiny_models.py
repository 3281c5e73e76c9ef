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

import tensorflow as tf
from edgeloop.testing.tiny_models import save_tiny_model

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Write both versions beside this script."""
    for version, bias in (("1", 1000.0), ("2", 2000.0)):
        with tempfile.TemporaryDirectory() as tmp:
            save_tiny_model(Path(tmp), bias)
            converter = tf.lite.TFLiteConverter.from_saved_model(
                tmp, signature_keys=["serving_default"])
            (HERE / f"tiny_v{version}.tflite").write_bytes(converter.convert())


if __name__ == "__main__":
    main()
