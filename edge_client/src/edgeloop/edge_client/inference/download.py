"""Fetching a model version from the gateway: chunks, resume, verification.

``EdgeGatewayService.DownloadModel`` streams the TFLite file from an offset. Bytes are
appended to ``<version>.tflite.part`` as they arrive (so a broken download resumes
from what is on disk); every chunk must carry the announced size and hash and follow
the previous one. The finished file is verified (size and SHA-256) before it is
renamed into place; a truncated or tampered file is deleted and the download fails,
and the caller retries from scratch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.edge_client.inference.store import ModelIdentity, ModelStore, VerificationError
from edgeloop.platform.channels import channel_options, open_channel
from edgeloop.platform.tls import ClientTLS

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 120.0
"""A download that takes longer is abandoned (and resumed on the next attempt)."""


class ModelFetcher:
    """Downloads model files from one gateway with the device's credentials."""

    def __init__(self, address: str, metadata: Sequence[tuple[str, str]],
                 tls: ClientTLS | None = None) -> None:
        self.address = address
        self.metadata = tuple(metadata)
        self.tls = tls

    async def fetch(self, identity: ModelIdentity, store: ModelStore) -> Path:
        """The verified file of ``identity`` in ``store`` (resumes a partial download).

        Raises VerificationError for a file that is not what was announced (deleted),
        and ``aio.AioRpcError`` for a broken download (kept, to resume).
        """
        if store.has(identity):
            return store.path(identity)
        part = store.part_path(identity)
        part.parent.mkdir(parents=True, exist_ok=True)
        offset = part.stat().st_size if part.exists() else 0
        if offset > identity.size_bytes:
            part.unlink()
            offset = 0
        async with open_channel(self.address, tls=self.tls, options=channel_options()) as channel:
            call = gw_grpc.EdgeGatewayServiceStub(channel).DownloadModel(
                gw_pb2.DownloadModelRequest(model_name=identity.model_name,
                                            model_version=identity.model_version, offset=offset,
                                            quantized=identity.quantized),
                metadata=self.metadata, timeout=DOWNLOAD_TIMEOUT_S)
            with part.open("ab") as fh:
                try:
                    async for chunk in call:
                        _check_chunk(chunk, identity, offset)
                        fh.write(chunk.data)
                        offset += len(chunk.data)
                except VerificationError:
                    fh.close()
                    part.unlink(missing_ok=True)
                    raise
                fh.flush()
                os.fsync(fh.fileno())
        log.info("model downloaded", extra={"model": identity.model_name,
                                            "version": identity.model_version, "bytes": offset,
                                            "quantized": identity.quantized})
        return store.commit(identity)


def _check_chunk(chunk: gw_pb2.DownloadModelResponse, identity: ModelIdentity,
                 offset: int) -> None:
    if (chunk.size_bytes, chunk.sha256) != (identity.size_bytes, identity.sha256):
        raise VerificationError(f"the gateway now sends a different file ({chunk.size_bytes} "
                                f"bytes, {chunk.sha256[:12]}…) than it announced")
    if chunk.offset != offset:
        raise VerificationError(f"chunk at offset {chunk.offset}, expected {offset}")
