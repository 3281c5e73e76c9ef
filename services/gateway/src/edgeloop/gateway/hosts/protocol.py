"""TF Serving's gRPC protocol served by edgeloop's own hosts, over a model repository.

:class:`ServingProtocol` answers ``PredictionService/Predict`` and ``GetModelMetadata``,
``ModelService/GetModelStatus`` and ``ModelService/HandleReloadConfigRequest`` the way
TF Serving does, with the versions run by any :class:`ModelHost` (the embedded host in
practice). The Ray Serve application (:mod:`edgeloop.gateway.hosts.rayserve`) is a thin
shell around it, so a gateway's :class:`TFServingHost` talks to TF Serving and to Ray
Serve alike. :class:`ProtocolServicer` puts it on a plain grpc.aio server.

Unlike TF Serving, versions load on demand: GetModelStatus for a version starts its load
and answers LOADING until it is warmed up (then AVAILABLE), which is exactly the poll
:meth:`TFServingHost.ensure_loaded` makes; Predict for a version not loaded yet answers
UNAVAILABLE instead of running it half-loaded.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
from edgeloop.gateway.hosts.base import ModelHost, ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.repository import ModelRepository
from edgeloop.gateway.hosts.tensors import to_ndarray, to_tensor_proto
from edgeloop.platform.errors import EdgeloopError, InvalidArgument
from google.protobuf.message import DecodeError
from grpc import aio
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

log = logging.getLogger(__name__)

Status = get_model_status_pb2.ModelVersionStatus
SIGNATURE = "serving_default"
SIGNATURE_DEF = "signature_def"


def read_signature_defs(saved_model: str) -> get_model_metadata_pb2.SignatureDefMap:
    """The signatures of the SavedModel in ``saved_model`` (its first, serving MetaGraph)."""
    path = Path(saved_model) / "saved_model.pb"
    try:
        graph = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    except (OSError, DecodeError) as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}") from exc
    signatures = get_model_metadata_pb2.SignatureDefMap()
    if graph.meta_graphs:
        for name, signature in graph.meta_graphs[0].signature_def.items():
            signatures.signature_def[name].CopyFrom(signature)
    return signatures


class ServingProtocol:
    """Predict / GetModelStatus / HandleReloadConfigRequest over ``repository`` and ``host``."""

    def __init__(self, host: ModelHost, repository: ModelRepository,
                 retry_failed_after_s: float = 30.0, loading_wait_s: float = 0.0) -> None:
        self.host = host
        self.repository = repository
        self.loading_wait_s = loading_wait_s
        """How long Predict waits for a version already loading here (0: answer UNAVAILABLE
        at once); replicas of a scaled-out host wait, as their peers may be ahead."""
        self.retry_failed_after_s = retry_failed_after_s
        """A failed load is reported (END) this long before a poll tries it again."""
        self._loads: dict[ModelKey, asyncio.Task[None]] = {}
        self._failed_at: dict[ModelKey, float] = {}

    def _unlabelled(self, key: ModelKey) -> ModelKey:
        # One loaded copy per version however it was addressed (label or number).
        return ModelKey(key.model_name, key.version, path=key.path)

    async def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Run the addressed version on ``inputs["image"]``; ``outputs["distance_mm"]``."""
        if request.model_spec.signature_name not in ("", SIGNATURE):
            raise InvalidArgument("model_spec.signature_name",
                                  f"only {SIGNATURE!r} is served, not "
                                  f"{request.model_spec.signature_name!r}")
        if "image" not in request.inputs:
            raise InvalidArgument("inputs", f"'image' is missing (got {sorted(request.inputs)})")
        key = self._unlabelled(self.repository.resolve(request.model_spec))
        load = self._loads.get(key)
        if self._status(key) == Status.LOADING and load is not None and self.loading_wait_s:
            # Loading already (another replica answered AVAILABLE first, or models.config
            # named it): wait a little rather than fail the frame.
            await asyncio.wait({load}, timeout=self.loading_wait_s)
        if self._status(key) != Status.AVAILABLE:
            self._start_load(key)
            raise ModelUnavailable(f"{key.model_name} v{key.version} is loading; "
                                   "poll GetModelStatus until AVAILABLE")
        distances = await self.host.predict(key, to_ndarray(request.inputs["image"]))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = key.model_name
        response.model_spec.version.value = int(key.version)
        response.model_spec.signature_name = SIGNATURE
        response.outputs["distance_mm"].CopyFrom(to_tensor_proto(distances))
        return response

    async def model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                             ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The addressed version's ``signature_def`` map, read from its SavedModel as TF
        Serving does (``metadata["signature_def"]`` holds a packed ``SignatureDefMap``)."""
        fields = list(request.metadata_field)
        if fields != [SIGNATURE_DEF]:
            raise InvalidArgument("metadata_field", f"only [{SIGNATURE_DEF!r}] is supported "
                                  f"(got {fields})")
        key = self._unlabelled(self.repository.resolve(request.model_spec))
        signatures = await asyncio.to_thread(read_signature_defs, key.path)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = key.model_name
        response.model_spec.version.value = int(key.version)
        response.metadata[SIGNATURE_DEF].Pack(signatures)
        return response

    async def model_status(self, request: get_model_status_pb2.GetModelStatusRequest
                           ) -> get_model_status_pb2.GetModelStatusResponse:
        """The addressed version's state; asking for it starts its load."""
        key = self._unlabelled(self.repository.resolve(request.model_spec))
        self._start_load(key)
        await asyncio.sleep(0)  # a version the host has already reports AVAILABLE at once
        status = Status(version=int(key.version), state=self._status(key))
        load = self._loads.get(key)
        if load is not None and load.done() and load.exception() is not None:
            status.state = Status.END
            status.status.error_code = grpc.StatusCode.UNAVAILABLE.value[0]
            status.status.error_message = str(load.exception())
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=[status])

    def preload_configured(self) -> None:
        """Start loading every version the repository's ``models.config`` names, as TF
        Serving loads its config; a replica of a scaled-out host calls this on every call
        and health check, so all replicas warm up a new version, not only the one that
        received the reload."""
        config = self.repository.config()
        if config is None:
            return
        for model in config.model_config_list.config:
            for version in model.model_version_policy.specific.versions:
                spec = model_pb2.ModelSpec(name=model.name)
                spec.version.value = version
                try:
                    self._start_load(self._unlabelled(self.repository.resolve(spec)))
                except EdgeloopError:
                    continue  # not published yet: the next call tries again

    async def reload_config(self, request: model_management_pb2.ReloadConfigRequest
                            ) -> model_management_pb2.ReloadConfigResponse:
        """Take the new ModelServerConfig and start loading the versions it names."""
        self.repository.apply(request.config)
        for model in request.config.model_config_list.config:
            for version in self.repository.versions(model.name):
                spec = model_pb2.ModelSpec(name=model.name)
                spec.version.value = version
                self._start_load(self._unlabelled(self.repository.resolve(spec)), retry=True)
        return model_management_pb2.ReloadConfigResponse()

    def _status(self, key: ModelKey) -> int:
        load = self._loads.get(key)
        if load is None:
            return Status.START
        if not load.done():
            return Status.LOADING
        return Status.AVAILABLE if load.exception() is None else Status.END

    def _start_load(self, key: ModelKey, retry: bool = False) -> None:
        """Load ``key`` unless it is loading or loaded; a failed load is retried only on
        ``retry`` or once ``retry_failed_after_s`` passed (TF Serving retries on reload)."""
        load = self._loads.get(key)
        loop = asyncio.get_running_loop()
        if load is not None:
            failed = load.done() and load.exception() is not None
            stale = loop.time() - self._failed_at.get(key, loop.time()) >= self.retry_failed_after_s
            if not failed or not (retry or stale):
                return
        task = loop.create_task(self.host.ensure_loaded(key))
        task.add_done_callback(lambda done: self._load_done(key, done))
        self._loads[key] = task

    def _load_done(self, key: ModelKey, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._failed_at[key] = asyncio.get_running_loop().time()
            log.warning("version load failed", extra={"model": key.model_name,
                                                      "version": key.version,
                                                      "error": str(task.exception())})


class ProtocolServicer(prediction_service_pb2_grpc.PredictionServiceServicer,
                       model_service_pb2_grpc.ModelServiceServicer):
    """:class:`ServingProtocol` on a grpc.aio server, errors as TF Serving's status codes."""

    def __init__(self, protocol: ServingProtocol) -> None:
        self.protocol = protocol

    def add_to_server(self, server: aio.Server) -> None:
        """Register both services on ``server``."""
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self, server)

    async def Predict(self, request, context):  # noqa: ANN001, ANN201, N802 - grpc names
        """PredictionService/Predict."""
        return await _answer(self.protocol.predict(request), context)

    async def GetModelMetadata(self, request, context):  # noqa: ANN001, ANN201, N802
        """PredictionService/GetModelMetadata."""
        return await _answer(self.protocol.model_metadata(request), context)

    async def GetModelStatus(self, request, context):  # noqa: ANN001, ANN201, N802
        """ModelService/GetModelStatus."""
        return await _answer(self.protocol.model_status(request), context)

    async def HandleReloadConfigRequest(self, request, context):  # noqa: ANN001, ANN201, N802
        """ModelService/HandleReloadConfigRequest."""
        return await _answer(self.protocol.reload_config(request), context)


async def _answer(call, context: aio.ServicerContext):  # noqa: ANN001, ANN202
    try:
        return await call
    except EdgeloopError as exc:
        await context.abort(exc.code, exc.message)
