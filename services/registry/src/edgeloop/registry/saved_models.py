"""What the registry asks TensorFlow about a SavedModel: its signature, its TFLite file.

These functions run in the registry's TensorFlow child process
(:class:`~edgeloop.platform.tensorflow_process.TensorFlowProcess`, started by
:class:`~edgeloop.registry.models.Models` when a version is registered or published and
ended when idle): the registry process itself never imports TensorFlow, whose ~600 MiB it
would otherwise hold for its whole life for a few seconds of use per version, and the
converter's C++ lines become records of the registry's log. This module imports nothing
else of the registry.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from edgeloop.platform.errors import InvalidArgument

SIGNATURE = "serving_default"
INPUT, OUTPUT = "image", "distance_mm"


def check_signature(saved_model: Path) -> None:
    """INVALID_ARGUMENT unless the SavedModel has the serving contract's signature."""
    loaded = tf.saved_model.load(str(saved_model))
    signature = loaded.signatures.get(SIGNATURE)
    if signature is None:
        raise InvalidArgument("run_id", f"the SavedModel has no {SIGNATURE!r} signature")
    _, inputs = signature.structured_input_signature
    image = inputs.get(INPUT)
    if image is None or image.dtype != tf.uint8 or image.shape.rank != 4:
        raise InvalidArgument("run_id", f"signature {SIGNATURE!r} needs input {INPUT!r}: uint8 "
                              f"[batch, height, width, 3]; it has {inputs}")
    output = signature.structured_outputs.get(OUTPUT)
    if output is None or output.dtype != tf.float32:
        raise InvalidArgument("run_id", f"signature {SIGNATURE!r} needs output {OUTPUT!r}: "
                              f"float32 [batch]; it has {signature.structured_outputs}")


def convert_tflite(saved_model: Path, target: Path) -> Path:
    """Convert a published SavedModel to a TFLite file at ``target``."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model),
                                                         signature_keys=[SIGNATURE])
    flatbuffer = converter.convert()
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_bytes(flatbuffer)
    staging.replace(target)
    return target
