"""The TF Serving host: a ``tensorflow.serving.PredictionService`` client over grpc.aio.

TF Serving (or anything speaking its protocol, such as the Ray Serve application)
owns the models; the registry tells it what to load. This client addresses a version
by its number, never by label: the registry moves a label (``stable``/``canary``) during a
version switch, so a label can be answered by another version than the one the gateway
names. An answer from any other version than the requested one is refused. Every attempt
has a deadline, UNAVAILABLE is retried with exponential backoff a bounded number of
times, and every failure becomes :class:`ModelUnavailable` (or :class:`InvalidArgument`
when TF Serving rejects the images themselves).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
import numpy as np
from edgeloop.gateway.hosts.base import ModelHost, ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.tensors import check_images, to_ndarray, to_tensor_proto
from edgeloop.platform import log_context, open_channel
from edgeloop.platform.errors import InvalidArgument
from grpc import aio
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

log = logging.getLogger(__name__)

INPUT = "image"
OUTPUT = "distance_mm"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


@dataclass(frozen=True)
class TFServingConfig:
    """Configuration of :class:`TFServingHost`."""

    address: str = "127.0.0.1:8500"
    """TF Serving's gRPC host:port (``EDGELOOP_TFSERVING_ADDR``)."""
    deadline_s: float = 1.0
    """Deadline of one Predict attempt; a frame is worth nothing after about a second."""
    max_attempts: int = 3
    """Predict attempts when TF Serving answers UNAVAILABLE (1 = no retry)."""
    initial_backoff_s: float = 0.05
    """Pause before the second attempt; doubles on each further attempt."""
    max_backoff_s: float = 1.0
    """Longest pause between attempts."""
    load_timeout_s: float = 60.0
    """How long :meth:`TFServingHost.ensure_loaded` waits for the version to be AVAILABLE."""
    status_poll_s: float = 0.25
    """Pause between two GetModelStatus polls."""
    signature_name: str = "serving_default"
    """The signature every edgeloop model serves (CONTRIBUTING.md)."""


def model_spec(key: ModelKey, signature_name: str = "") -> model_pb2.ModelSpec:
    """The ModelSpec for ``key``: its version number (none: the latest version).

    ``key.version_label`` is ignored on purpose: the version a label points at changes
    under the gateway during a switch, and the answer must be the named version's.
    """
    spec = model_pb2.ModelSpec(name=key.model_name, signature_name=signature_name)
    if key.version:
        try:
            spec.version.value = int(key.version)
        except ValueError as exc:
            raise ModelUnavailable(f"{key.model_name}: TF Serving versions are numbers, "
                                   f"not {key.version!r}") from exc
    return spec


def _backoff(attempt: int, config: TFServingConfig) -> float:
    return min(config.max_backoff_s, config.initial_backoff_s * 2 ** (attempt - 1))


class TFServingHost(ModelHost):
    """Predicts through TensorFlow Serving's gRPC ``PredictionService``."""

    def __init__(self, config: TFServingConfig | None = None) -> None:
        self.config = config or TFServingConfig()
        self._channel: aio.Channel | None = None

    def _open(self) -> aio.Channel:
        # Created on first use so it binds to the running event loop. grpc's own
        # retries are off: this class retries, and the two would multiply.
        if self._channel is None:
            self._channel = open_channel(self.config.address, retries=False)
        return self._channel

    async def predict(self, key: ModelKey, images: np.ndarray) -> np.ndarray:
        """Distances for ``images`` from TF Serving; UNAVAILABLE is retried a bounded number
        of times."""
        check_images(images)
        request = predict_pb2.PredictRequest(model_spec=model_spec(key, self.config.signature_name))
        request.inputs[INPUT].CopyFrom(to_tensor_proto(images))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self._open())
        with log_context(model=key.model_name, version=key.version):
            response = await self._call_with_retries(key, stub.Predict, request)
            return self._distances(key, response, len(images))

    async def _call_with_retries(
            self, key: ModelKey, method: aio.UnaryUnaryMultiCallable,
            request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                return await method(request, timeout=self.config.deadline_s)
            except aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.config.max_attempts:
                    raise self._translate(key, exc, attempt) from exc
                pause = _backoff(attempt, self.config)
                log.info("TF Serving unavailable; retrying", extra={
                    "attempt": attempt, "backoff_s": pause, "error": exc.details()})
                await asyncio.sleep(pause)
        raise AssertionError("unreachable: the loop returns or raises")

    def _translate(self, key: ModelKey, exc: aio.AioRpcError, attempts: int) -> Exception:
        """The edgeloop error for a failed Predict."""
        code, details = exc.code(), exc.details()
        what = f"{key.model_name} {_describe(key)} at {self.config.address}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidArgument("images", f"TF Serving rejected them: {details}")
        if code == grpc.StatusCode.UNAVAILABLE:
            return ModelUnavailable(f"{what}: TF Serving unavailable after {attempts} attempts: "
                                    f"{details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ModelUnavailable(f"{what}: no answer within {self.config.deadline_s}s")
        if code == grpc.StatusCode.NOT_FOUND:
            return ModelUnavailable(f"{what}: not loaded in TF Serving: {details}")
        return ModelUnavailable(f"{what}: TF Serving answered {code.name}: {details}")

    def _distances(self, key: ModelKey, response: predict_pb2.PredictResponse,
                   batch: int) -> np.ndarray:
        _check_answering_version(key, response.model_spec.version.value)
        if OUTPUT not in response.outputs:
            raise ModelUnavailable(f"{key.model_name} {_describe(key)}: the answer has no "
                                   f"'{OUTPUT}' (has {sorted(response.outputs)})")
        distances = to_ndarray(response.outputs[OUTPUT]).astype(np.float32, copy=False)
        distances = distances.reshape(-1)
        if distances.shape != (batch,):
            raise ModelUnavailable(f"{key.model_name} {_describe(key)}: {distances.size} "
                                   f"distances for {batch} images")
        return distances

    async def ensure_loaded(self, key: ModelKey) -> None:
        """Poll ``ModelService.GetModelStatus`` until ``key`` is AVAILABLE (bounded)."""
        stub = model_service_pb2_grpc.ModelServiceStub(self._open())
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(key))
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.config.load_timeout_s
        with log_context(model=key.model_name, version=key.version):
            while True:
                last = await self._poll_status(stub, request)
                if last == "AVAILABLE":
                    return
                if loop.time() >= give_up:
                    raise ModelUnavailable(
                        f"{key.model_name} {_describe(key)} at {self.config.address} is not "
                        f"AVAILABLE after {self.config.load_timeout_s}s (last seen: {last})")
                await asyncio.sleep(self.config.status_poll_s)

    async def _poll_status(self, stub: model_service_pb2_grpc.ModelServiceStub,
                           request: get_model_status_pb2.GetModelStatusRequest) -> str:
        """One GetModelStatus: ``AVAILABLE``, another state's name, or why there is none."""
        try:
            response = await stub.GetModelStatus(request, timeout=self.config.deadline_s)
        except aio.AioRpcError as exc:
            # NOT_FOUND: not in TF Serving's config yet; UNAVAILABLE: TF Serving is
            # starting. Both may change while we wait; anything else is final.
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
                              grpc.StatusCode.DEADLINE_EXCEEDED):
                return f"{exc.code().name}: {exc.details()}"
            raise ModelUnavailable(f"GetModelStatus at {self.config.address} failed: "
                                   f"{exc.code().name}: {exc.details()}") from exc
        statuses = list(response.model_version_status)
        if any(status.state == AVAILABLE for status in statuses):
            return "AVAILABLE"
        failed = [s for s in statuses if s.state == END and s.status.error_message]
        if failed:
            # The host tried and gave up (e.g. a broken SavedModel): waiting will not help.
            raise ModelUnavailable(f"{request.model_spec.name} failed to load at "
                                   f"{self.config.address}: {failed[0].status.error_message}")
        names = [get_model_status_pb2.ModelVersionStatus.State.Name(s.state) for s in statuses]
        return ",".join(names) or "no versions"

    async def release(self, key: ModelKey) -> None:
        """Nothing to do: TF Serving unloads versions when the registry changes its config."""

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def _check_answering_version(key: ModelKey, answered: int) -> None:
    """Refuse an answer from another version than ``key``'s: the gateway records the
    answer under ``key.version``, so another version's distances would be misattributed.

    ``answered`` is 0 when the server does not say, and ``key`` may ask for the latest
    version (no number): then there is nothing to compare. (:func:`model_spec` has
    checked that ``key.version`` is a number before the request went out.)
    """
    if answered and key.version and answered != int(key.version):
        raise ModelUnavailable(f"{key.model_name} {_describe(key)}: answered by v{answered}, "
                               "not the version asked for")


def _describe(key: ModelKey) -> str:
    return f"v{key.version}" if key.version else "latest version"
