"""TF Serving's gRPC API as a protoset (``FileDescriptorSet``), for ``grpcurl -protoset``.

Ray Serve's gRPC proxy lists the services through server reflection, but in Ray 2.60 it
does not answer reflection's symbol look-ups for them, so ``grpcurl`` cannot describe or
call them by reflection alone. The descriptors compiled into ``tensorflow-serving-api``
are the same the model hosts serve; written as a protoset they let ``grpcurl`` call any
TF Serving-speaking server::

    python -m edgeloop.gateway.hosts.protoset tfserving.protoset
    grpcurl -plaintext -protoset tfserving.protoset \\
        -d '{"model_spec": {"name": "parking"}, "metadata_field": ["signature_def"]}' \\
        127.0.0.1:50054 tensorflow.serving.PredictionService/GetModelMetadata
"""

from __future__ import annotations

import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2,
    prediction_service_pb2,
)

ROOTS = (prediction_service_pb2.DESCRIPTOR, model_service_pb2.DESCRIPTOR,
         get_model_metadata_pb2.DESCRIPTOR)


def _add(file: FileDescriptor, out: descriptor_pb2.FileDescriptorSet, seen: set[str]) -> None:
    if file.name in seen:
        return
    seen.add(file.name)
    for dependency in file.dependencies:  # dependencies first, as protosets list them
        _add(dependency, out, seen)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    out.file.append(proto)


def tfserving_protoset() -> bytes:
    """PredictionService, ModelService and every file they import, serialized."""
    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()
    for root in ROOTS:
        _add(root, out, seen)
    return out.SerializeToString()


def main() -> None:
    """``python -m edgeloop.gateway.hosts.protoset <file>``: write the protoset."""
    if len(sys.argv) != 2:
        sys.exit("usage: python -m edgeloop.gateway.hosts.protoset <output.protoset>")
    Path(sys.argv[1]).write_bytes(tfserving_protoset())


if __name__ == "__main__":
    main()
