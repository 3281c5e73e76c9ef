"""A SavedModel's serving signature, read from its ``saved_model.pb`` without TensorFlow.

The registry refuses a version whose SavedModel lacks the serving contract's signature
(``serving_default``: input ``image`` uint8 [batch, height, width, 3], output
``distance_mm`` float32). That check used to load the model in the registry's TensorFlow
child, so every registration after the child had ended for idleness waited ~3–4 s for
TensorFlow's import. The signature is data in ``saved_model.pb``, so it is read here with
protobuf alone; the TFLite conversion that follows every registration loads the whole
model in the child anyway, off the registration's path.

The messages are declared below as a wire-compatible subset of TensorFlow's
``tensorflow/core/protobuf/{saved_model,meta_graph}.proto`` and
``tensorflow/core/framework/tensor_shape.proto`` (same field numbers; ``DataType`` read as
the integer it is on the wire): protobuf skips the fields a schema does not declare, so
they parse any SavedModel and keep only its tags and signatures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeloop.platform.errors import InvalidArgument
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

SIGNATURE = "serving_default"
INPUT, OUTPUT = "image", "distance_mm"
SERVE_TAG = "serve"
DT_FLOAT, DT_UINT8 = 1, 4  # tensorflow/core/framework/types.proto
_DTYPE_NAMES = {DT_FLOAT: "float32", DT_UINT8: "uint8"}

_PACKAGE = "edgeloop.registry.savedmodel_subset"
_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "",
           repeated: bool = False) -> _F:
    field = _F(name=name, number=number, type=kind,
               label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:  # set at all (even empty), it would claim a message or enum type
        field.type_name = type_name
    return field


def _message(name: str, *fields: _F, maps: dict[str, tuple[int, str]] | None = None
             ) -> descriptor_pb2.DescriptorProto:
    """A message; ``maps`` adds ``map<string, V>`` fields as protobuf encodes them."""
    message = descriptor_pb2.DescriptorProto(name=name, field=list(fields))
    for field_name, (number, value_type) in (maps or {}).items():
        entry = "".join(part.title() for part in field_name.split("_")) + "Entry"
        message.nested_type.add(name=entry, options=descriptor_pb2.MessageOptions(map_entry=True),
                                field=[_field("key", 1, _F.TYPE_STRING),
                                       _field("value", 2, _F.TYPE_MESSAGE, value_type)])
        message.field.append(_field(field_name, number, _F.TYPE_MESSAGE,
                                    f".{_PACKAGE}.{name}.{entry}", repeated=True))
    return message


def _saved_model_class() -> Any:
    def ref(name: str) -> str:
        return f".{_PACKAGE}.{name}"

    file = descriptor_pb2.FileDescriptorProto(
        name="edgeloop/registry/savedmodel_subset.proto", package=_PACKAGE, syntax="proto3",
        message_type=[
            _message("Dim", _field("size", 1, _F.TYPE_INT64), _field("name", 2, _F.TYPE_STRING)),
            _message("TensorShapeProto", _field("dim", 2, _F.TYPE_MESSAGE, ref("Dim"), True),
                     _field("unknown_rank", 3, _F.TYPE_BOOL)),
            _message("TensorInfo", _field("name", 1, _F.TYPE_STRING),
                     _field("dtype", 2, _F.TYPE_INT32),
                     _field("tensor_shape", 3, _F.TYPE_MESSAGE, ref("TensorShapeProto"))),
            _message("SignatureDef", _field("method_name", 3, _F.TYPE_STRING),
                     maps={"inputs": (1, ref("TensorInfo")), "outputs": (2, ref("TensorInfo"))}),
            _message("MetaInfoDef", _field("tags", 4, _F.TYPE_STRING, repeated=True)),
            _message("MetaGraphDef",
                     _field("meta_info_def", 1, _F.TYPE_MESSAGE, ref("MetaInfoDef")),
                     maps={"signature_def": (5, ref("SignatureDef"))}),
            _message("SavedModel", _field("saved_model_schema_version", 1, _F.TYPE_INT64),
                     _field("meta_graphs", 2, _F.TYPE_MESSAGE, ref("MetaGraphDef"), True)),
        ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.SavedModel"))


SavedModelProto = _saved_model_class()


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
