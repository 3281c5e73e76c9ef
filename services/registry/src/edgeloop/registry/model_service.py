"""TF Serving's ModelService, called without importing TensorFlow.

TF Serving's generated API modules import ``tensorflow.core``'s error codes (its
``StatusProto``), and with them all of TensorFlow (~600 MiB RSS, for the registry's whole
life). So the two calls the registry makes go through generic gRPC stubs, with
wire-compatible subsets (:mod:`~edgeloop.registry.proto_subsets`) of
``tensorflow_serving/apis/{model_management,get_model_status,model,status}.proto``. The
config itself is TF Serving's own ``ModelServerConfig`` (``tensorflow_serving.config``
imports no TensorFlow), sent as the bytes of the request's embedded message.
``tests/test_publishing.py`` serves these calls with TF Serving's real generated classes.
"""

from __future__ import annotations

from typing import Any

import grpc
from edgeloop.registry.proto_subsets import field, message, message_classes
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

SERVICE = "/tensorflow.serving.ModelService/"
AVAILABLE = 30
"""``ModelVersionStatus.State.AVAILABLE``."""

_MESSAGES = message_classes(
    "edgeloop.registry.model_service_subset",
    message("StatusProto", field("error_code", 1, "int32"), field("error_message", 2, "string")),
    message("ReloadConfigRequest", field("config", 1, "bytes")),
    message("ReloadConfigResponse", field("status", 1, "StatusProto")),
    message("ModelSpec", field("name", 1, "string")),
    message("GetModelStatusRequest", field("model_spec", 1, "ModelSpec")),
    message("ModelVersionStatus", field("version", 1, "int64"), field("state", 2, "int32"),
            field("status", 3, "StatusProto")),
    message("GetModelStatusResponse",
            field("model_version_status", 1, "ModelVersionStatus", repeated=True)),
)
ReloadConfigRequest = _MESSAGES["ReloadConfigRequest"]
ReloadConfigResponse = _MESSAGES["ReloadConfigResponse"]
GetModelStatusRequest = _MESSAGES["GetModelStatusRequest"]
GetModelStatusResponse = _MESSAGES["GetModelStatusResponse"]


class ModelServiceClient:
    """``HandleReloadConfigRequest`` and ``GetModelStatus`` of one TF Serving."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._reload = channel.unary_unary(
            SERVICE + "HandleReloadConfigRequest",
            request_serializer=ReloadConfigRequest.SerializeToString,
            response_deserializer=ReloadConfigResponse.FromString)
        self._status = channel.unary_unary(
            SERVICE + "GetModelStatus",
            request_serializer=GetModelStatusRequest.SerializeToString,
            response_deserializer=GetModelStatusResponse.FromString)

    async def reload(self, config: ModelServerConfig, timeout: float) -> tuple[int, str]:
        """Apply ``config``; TF Serving's answer as ``(error_code, error_message)`` (0: OK)."""
        reply: Any = await self._reload(
            ReloadConfigRequest(config=config.SerializeToString()), timeout=timeout)
        return reply.status.error_code, reply.status.error_message

    async def available_versions(self, model: str, timeout: float) -> set[int]:
        """The versions of ``model`` TF Serving reports AVAILABLE (NOT_FOUND raises)."""
        request = GetModelStatusRequest()
        request.model_spec.name = model
        reply: Any = await self._status(request, timeout=timeout)
        return {s.version for s in reply.model_version_status if s.state == AVAILABLE}
