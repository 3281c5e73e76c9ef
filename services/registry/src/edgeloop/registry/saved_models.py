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

import logging
from pathlib import Path

import tensorflow as tf
from edgeloop.platform.logs import drop_library_notices
from edgeloop.registry.signatures import SIGNATURE

log = logging.getLogger(__name__)
CONVERTER_NOTICES = tuple(
    # TensorFlow's Python converter still passes these two legacy flags and its MLIR
    # converter says at every conversion that it ignores them: nothing to act on.
    ("edgeloop.platform.tensorflow_import", f"Ignored {flag}.")
    for flag in ("output_format", "drop_control_dependency"))


def convert_tflite(saved_model: Path, target: Path, quantized_target: Path | None = None) -> Path:
    """Convert a published SavedModel to a TFLite file at ``target``.

    With ``quantized_target``, a dynamic-range quantized file (weights int8, activations
    quantized per call) is written there first: the gateway's LiteRT runs it at half the
    CPU a frame. It comes first because the float file's appearance is what tells a model
    host that the conversion has ended. Its failure is logged and leaves the float file.
    """
    drop_library_notices(CONVERTER_NOTICES)
    if quantized_target is not None:
        try:
            _write(_converted(saved_model, quantized=True), quantized_target)
        except Exception:  # a converter failure: the float file still serves every purpose
            log.exception("quantized TFLite conversion failed",
                          extra={"path": str(quantized_target)})
    _write(_converted(saved_model, quantized=False), target)
    return target


def _converted(saved_model: Path, quantized: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model),
                                                         signature_keys=[SIGNATURE])
    if quantized:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no dataset: dynamic range
    return converter.convert()


def _write(flatbuffer: bytes, target: Path) -> None:
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_bytes(flatbuffer)
    staging.replace(target)
