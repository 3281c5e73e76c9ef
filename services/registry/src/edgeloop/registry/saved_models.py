"""What the registry asks TensorFlow of a SavedModel: its TFLite file.

This runs in the registry's TensorFlow child process
(:class:`~edgeloop.platform.tensorflow_process.TensorFlowProcess`, started by
:class:`~edgeloop.registry.models.Models` when a version is registered or published and
ended when idle): the registry process itself never imports TensorFlow, whose ~600 MiB it
would otherwise hold for its whole life for a few seconds of use per version, and the
converter's C++ lines become records of the registry's log. Of the registry, this module
imports only the signature's name.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from edgeloop.registry.signatures import SIGNATURE


def convert_tflite(saved_model: Path, target: Path) -> Path:
    """Convert a published SavedModel to a TFLite file at ``target``."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model),
                                                         signature_keys=[SIGNATURE])
    flatbuffer = converter.convert()
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_bytes(flatbuffer)
    staging.replace(target)
    return target
