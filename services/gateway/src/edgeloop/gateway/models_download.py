"""Model files for robots that predict on the device: where they are, what they hash to, chunks.

The registry publishes a TFLite file beside every SavedModel
(``<repository>/<model>/<version>.tflite``, CONTRIBUTING "Model repository") and its
dynamic-range quantized twin (``<version>.quantized.tflite``). A robot running LiteRT
fetches one of them with ``EdgeGatewayService.DownloadModel``: chunks of
:data:`CHUNK_BYTES` from the offset it asks for (so a broken download resumes), each
carrying the whole file's size and SHA-256, which the robot verifies before loading.
Hashes are computed off the event loop and cached per (path, size, mtime), so a new
version is hashed once however many robots ask.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.gateway.deployments import DeploymentState
from edgeloop.gateway.hosts.base import ModelKey
from edgeloop.gateway.hosts.litert import quantized_beside, tflite_beside
from edgeloop.platform.errors import FailedPrecondition, InvalidArgument, NotFound

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
"""Chunk size of a download: small enough for a robot's WiFi, large enough to be cheap."""


@dataclass(frozen=True)
class ModelFile:
    """A published TFLite file and its identity."""

    path: Path
    size_bytes: int
    sha256: str


def tflite_path(key: ModelKey, model_repository: str = "", quantized: bool = False) -> Path:
    """The TFLite file of ``key`` (or its quantized twin): in the model repository, else
    beside its SavedModel."""
    saved_model = Path(model_repository) / key.model_name / key.version if model_repository \
        else key.path
    return (quantized_beside if quantized else tflite_beside)(saved_model, key.version)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


class ModelFiles:
    """Finds, hashes (cached) and streams the TFLite files of the versions deployments name."""

    def __init__(self, state: DeploymentState, model_repository: str = "") -> None:
        self.state = state
        self.model_repository = model_repository
        self._hashes: dict[tuple[str, int, int], str] = {}

    async def describe(self, key: ModelKey, quantized: bool = False) -> ModelFile | None:
        """The published TFLite file of ``key`` (or its quantized twin) with size and hash;
        None if not published."""
        path = tflite_path(key, self.model_repository, quantized)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        cache_key = (str(path), stat.st_size, stat.st_mtime_ns)
        digest = self._hashes.get(cache_key)
        if digest is None:
            digest = await asyncio.to_thread(_sha256, path)
            self._hashes[cache_key] = digest
        return ModelFile(path, stat.st_size, digest)

    def key_for(self, deployment: str, model_name: str, version: str) -> ModelKey:
        """The model key of a version the device's deployment names, else an error value."""
        if not model_name:
            raise InvalidArgument("model_name", "is empty; name the model to download")
        if not version.isdigit():
            # Registry versions are numbers; anything else could reach outside the repository.
            raise InvalidArgument("model_version", f"{version[:40]!r} is not a version number")
        view = self.state.get(deployment)
        keys = view.model_keys() if view else set()
        for key in keys:
            if key.model_name == model_name and key.version == version:
                return key
        if any(key.model_name == model_name for key in keys):
            # An older or newer version of the device's own model: allowed (a robot may
            # still be fetching the version it was told about a moment ago).
            return ModelKey(model_name, version, os.path.join(
                os.path.dirname(next(k.path for k in keys if k.model_name == model_name)),
                version))
        raise NotFound(f"model {model_name!r} is not served by deployment {deployment!r} of "
                       "this device")

    async def chunks(self, key: ModelKey, offset: int,
                     quantized: bool = False) -> AsyncIterator[gw_pb2.DownloadModelResponse]:
        """The file of ``key`` (or its quantized twin) from ``offset`` on, in chunks;
        NOT_FOUND when not published."""
        described = await self.describe(key, quantized)
        if described is None:
            what = "quantized twin" if quantized else "TFLite file"
            raise NotFound(f"model {key.model_name} v{key.version} has no {what} (the registry "
                           "publishes both beside every SavedModel it can convert)")
        if offset > described.size_bytes:
            raise InvalidArgument("offset", f"{offset} is beyond the file's "
                                  f"{described.size_bytes} bytes")
        with described.path.open("rb") as fh:
            fh.seek(offset)
            position = offset
            while True:
                data = await asyncio.to_thread(fh.read, CHUNK_BYTES)
                if not data and position < described.size_bytes:
                    raise FailedPrecondition(f"model file {described.path.name} shrank while "
                                             "being sent; retry")
                yield gw_pb2.DownloadModelResponse(size_bytes=described.size_bytes,
                                                   sha256=described.sha256, offset=position,
                                                   data=data)
                position += len(data)
                if position >= described.size_bytes:
                    return
