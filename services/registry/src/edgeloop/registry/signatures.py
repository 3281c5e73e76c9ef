"""A SavedModel's serving signature, read from its ``saved_model.pb`` without TensorFlow.

The registry refuses a version whose SavedModel lacks the serving contract's signature
(``serving_default``: input ``image`` uint8 [batch, height, width, 3], output
``distance_mm`` float32). That check used to load the model in the registry's TensorFlow
child, so every registration after the child had ended for idleness waited ~3–4 s for
TensorFlow's import. The signature is data in ``saved_model.pb``, so it is read here with
protobuf alone; the TFLite conversion that follows every registration loads the whole
model in the child anyway, off the registration's path.

The messages are declared below as a wire-compatible subset
(:mod:`~edgeloop.registry.proto_subsets`) of TensorFlow's
``tensorflow/core/protobuf/{saved_model,meta_graph}.proto`` and
``tensorflow/core/framework/tensor_shape.proto``: they parse any SavedModel and keep only
its tags and signatures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeloop.platform.errors import InvalidArgument
from edgeloop.registry.proto_subsets import field, message, message_classes
from google.protobuf import text_format
from google.protobuf.message import DecodeError

SIGNATURE = "serving_default"
INPUT, OUTPUT = "image", "distance_mm"
SERVE_TAG = "serve"
DT_FLOAT, DT_UINT8 = 1, 4  # tensorflow/core/framework/types.proto
_DTYPE_NAMES = {DT_FLOAT: "float32", DT_UINT8: "uint8"}

SavedModelProto = message_classes(
    "edgeloop.registry.savedmodel_subset",
    message("Dim", field("size", 1, "int64"), field("name", 2, "string")),
    message("TensorShapeProto", field("dim", 2, "Dim", repeated=True),
            field("unknown_rank", 3, "bool")),
    message("TensorInfo", field("name", 1, "string"), field("dtype", 2, "int32"),
            field("tensor_shape", 3, "TensorShapeProto")),
    message("SignatureDef", field("method_name", 3, "string"),
            maps={"inputs": (1, "TensorInfo"), "outputs": (2, "TensorInfo")}),
    message("MetaInfoDef", field("tags", 4, "string", repeated=True)),
    message("MetaGraphDef", field("meta_info_def", 1, "MetaInfoDef"),
            maps={"signature_def": (5, "SignatureDef")}),
    message("SavedModel", field("saved_model_schema_version", 1, "int64"),
            field("meta_graphs", 2, "MetaGraphDef", repeated=True)),
)["SavedModel"]


def read_saved_model(folder: Path) -> Any:
    """The SavedModel message of ``folder`` (its ``saved_model.pb``, or ``.pbtxt``)."""
    binary, text = folder / "saved_model.pb", folder / "saved_model.pbtxt"
    message = SavedModelProto()
    try:
        if binary.exists():
            message.ParseFromString(binary.read_bytes())
        elif text.exists():
            text_format.Parse(text.read_text(), message, allow_unknown_field=True)
        else:
            raise InvalidArgument("run_id", "the model artifact has no saved_model.pb: "
                                  "not a TensorFlow SavedModel")
    except (DecodeError, text_format.ParseError) as exc:
        raise InvalidArgument("run_id", f"the model artifact's saved_model file does not "
                              f"parse: {exc}") from exc
    return message


def serving_signatures(message: Any) -> Any:
    """The signatures of the meta graph a server loads: tagged ``serve``, or the only one."""
    graphs = list(message.meta_graphs)
    tagged = [g for g in graphs if SERVE_TAG in g.meta_info_def.tags]
    if tagged:
        return tagged[0].signature_def
    if len(graphs) == 1:
        return graphs[0].signature_def
    raise InvalidArgument("run_id", f"the SavedModel has no meta graph tagged {SERVE_TAG!r}")


def check_signature(saved_model: Path) -> None:
    """INVALID_ARGUMENT unless the SavedModel has the serving contract's signature."""
    signatures = serving_signatures(read_saved_model(saved_model))
    if SIGNATURE not in signatures:
        raise InvalidArgument("run_id", f"the SavedModel has no {SIGNATURE!r} signature")
    signature = signatures[SIGNATURE]
    image = signature.inputs.get(INPUT)
    if (image is None or image.dtype != DT_UINT8 or image.tensor_shape.unknown_rank
            or len(image.tensor_shape.dim) != 4):
        raise InvalidArgument("run_id", f"signature {SIGNATURE!r} needs input {INPUT!r}: uint8 "
                              f"[batch, height, width, 3]; it has {_describe(signature.inputs)}")
    output = signature.outputs.get(OUTPUT)
    if output is None or output.dtype != DT_FLOAT:
        raise InvalidArgument("run_id", f"signature {SIGNATURE!r} needs output {OUTPUT!r}: "
                              f"float32 [batch]; it has {_describe(signature.outputs)}")


def _describe(tensors: Any) -> str:
    """``{name: dtype [dims]}`` of a signature's inputs or outputs, for an error message."""
    def shape(info: Any) -> str:
        if info.tensor_shape.unknown_rank:
            return "[?]"
        return "[" + ", ".join(str(d.size) for d in info.tensor_shape.dim) + "]"

    return "{" + ", ".join(
        f"{name}: {_DTYPE_NAMES.get(info.dtype, f'dtype {info.dtype}')} {shape(info)}"
        for name, info in sorted(tensors.items())) + "}"
