"""Wire-compatible subsets of TensorFlow's protobuf messages, declared at run time.

TensorFlow's generated modules (``tensorflow.core...``, and TF Serving's API modules that
import them) run TensorFlow's package ``__init__`` when imported: ~600 MiB RSS the registry
would hold for its whole life for a few messages. A subset declares only the fields the
registry reads or writes, with TensorFlow's field numbers; protobuf skips the fields a
schema does not declare when it parses, so a subset reads the full messages, and what it
writes the full schema reads. An embedded message may be declared as ``bytes`` (the same
wire type) and filled with a message serialized by its own generated class; an enum as
``int32`` (the same varint).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

Field = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"int32": Field.TYPE_INT32, "int64": Field.TYPE_INT64, "bool": Field.TYPE_BOOL,
            "string": Field.TYPE_STRING, "bytes": Field.TYPE_BYTES}


def field(name: str, number: int, kind: str, repeated: bool = False) -> Field:
    """A field of ``kind``: a scalar type as a ``.proto`` names it (``"int64"``) or a
    message of the same subset (``"TensorShapeProto"``)."""
    label = Field.LABEL_REPEATED if repeated else Field.LABEL_OPTIONAL
    if kind in _SCALARS:
        return Field(name=name, number=number, type=_SCALARS[kind], label=label)
    return Field(name=name, number=number, type=Field.TYPE_MESSAGE, type_name=kind, label=label)


def message(name: str, *fields: Field, maps: dict[str, tuple[int, str]] | None = None
            ) -> descriptor_pb2.DescriptorProto:
    """A message; ``maps`` adds ``map<string, V>`` fields (name: (number, V)) as protobuf
    encodes them: a repeated entry message of ``key`` 1 and ``value`` 2."""
    declared = descriptor_pb2.DescriptorProto(name=name, field=list(fields))
    for field_name, (number, value_type) in (maps or {}).items():
        entry = "".join(part.title() for part in field_name.split("_")) + "Entry"
        declared.nested_type.add(
            name=entry, options=descriptor_pb2.MessageOptions(map_entry=True),
            field=[field("key", 1, "string"), field("value", 2, value_type)])
        declared.field.append(field(field_name, number, f"{name}.{entry}", repeated=True))
    return declared


def message_classes(package: str, *messages: descriptor_pb2.DescriptorProto
                    ) -> dict[str, Any]:
    """The message classes of one subset, by name. Message types in its fields are named
    relative to ``package`` (``"Dim"``, ``"SignatureDef.InputsEntry"``)."""
    for declared in messages:
        _qualify(declared, package)
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}.proto", package=package, syntax="proto2",
        message_type=list(messages))
    pool = descriptor_pool.DescriptorPool()  # its own pool: no clash with TensorFlow's names
    pool.Add(file)
    return {m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"{package}.{m.name}")) for m in messages}


def _qualify(declared: descriptor_pb2.DescriptorProto, package: str) -> None:
    for one in declared.field:
        if one.type_name and not one.type_name.startswith("."):
            one.type_name = f".{package}.{one.type_name}"
    for nested in declared.nested_type:
        _qualify(nested, package)
