"""The model the robot runs itself, kept current in the background.

The stream client hands every ``ModelUpdate`` (in the Welcome and on the stream) to
:meth:`DeviceModel.want`. A background task downloads the announced version (resuming,
verified by size and SHA-256, retried with backoff when broken, truncated or tampered),
loads it into a new LiteRT interpreter off the event loop, and swaps it in. The swap is
a single reference assignment between two frames: a frame being predicted finishes on
the model it started with, and the next frame (and its ``device_prediction``) names the
new version. Without a gateway the robot keeps predicting with the model it has.

A robot created with ``quantized`` declares ``quantized_model``: the gateway then offers a
version's dynamic-range quantized twin (a quarter of the download, about half the CPU) once
it runs that twin itself, its answers within 1 mm of the SavedModel's; the robot may get the
float file of a version first and its twin in a second update, and swaps to the twin as to
any new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.edge_client.inference.download import ModelFetcher
from edgeloop.edge_client.inference.litert import DeviceAnswer, LiteRTModel, ModelLoadError
from edgeloop.edge_client.inference.store import ModelIdentity, ModelStore, VerificationError
from edgeloop.edge_client.stream.backoff import Backoff
from grpc import aio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Switch:
    """When the robot started predicting with a version (monotonic and wall clock)."""

    model_version: str
    at_monotonic: float
    at_wall: float
    quantized: bool = False
    """It runs the version's quantized twin."""


class DeviceModel:
    """The robot's current LiteRT model and the background updater that replaces it."""

    def __init__(self, store: ModelStore, threads: int | None = None,
                 backoff: Backoff | None = None, quantized: bool = False) -> None:
        self.store = store
        self.threads = threads
        self.backoff = backoff or Backoff(0.2, 5.0)
        self.quantized = quantized
        """Whether the robot runs quantized twins when offered (Hello ``quantized_model``)."""
        self.model: LiteRTModel | None = None
        self.identity: ModelIdentity | None = None
        """The file predicting now."""
        self.wanted: ModelIdentity | None = None
        self.switches: list[Switch] = []
        self.refused: list[str] = []
        """Why downloads were refused (verification failures), newest last."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fetcher: ModelFetcher | None = None

    @property
    def version(self) -> str:
        """The version predicting now; empty without a model."""
        return self.model.model_version if self.model else ""

    def load_stored(self) -> bool:
        """Load the store's current model, re-verified (at start, before any gateway)."""
        identity = self.store.current()
        if identity is None:
            return False
        try:
            self._swap(identity, LiteRTModel(self.store.path(identity), identity.model_name,
                                             identity.model_version, self.threads,
                                             identity.quantized))
        except ModelLoadError:
            log.exception("the stored model does not load; waiting for a new download")
            return False
        return True

    def start(self, fetcher: ModelFetcher) -> None:
        """Start the background updater, downloading through ``fetcher``."""
        self._fetcher = fetcher
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="device-model-updater")

    async def stop(self) -> None:
        """Stop the updater (a download in progress stays on disk, to resume)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def want(self, update: edge_pb2.ModelUpdate) -> None:
        """The gateway announced the version to run; fetch and swap to it if it is new."""
        if not (update.model_name and update.model_version and update.sha256):
            return  # no model, or not published as TFLite: keep what we have
        identity = ModelIdentity(update.model_name, update.model_version, update.size_bytes,
                                 update.sha256, update.quantized)
        if self.model is not None and self.identity == identity:
            return  # the same file (a version's twin is another file: it is installed)
        self.wanted = identity
        self._wake.set()

    async def predict(self, jpeg: bytes) -> DeviceAnswer | None:
        """The current model's answer for a frame (off the event loop); None without a model."""
        model = self.model  # the swap never changes the model under a running frame
        if model is None:
            return None
        return await asyncio.to_thread(model.predict, jpeg)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            identity = self.wanted
            if identity is None:
                continue
            try:
                await self._install(identity)
                self.backoff.reset()
            except asyncio.CancelledError:
                raise
            except (aio.AioRpcError, VerificationError, ModelLoadError, OSError) as exc:
                if isinstance(exc, VerificationError | ModelLoadError):
                    self.refused.append(str(exc))
                delay = self.backoff.next_delay()
                log.warning("model update failed; retrying",
                            extra={"version": identity.model_version, "reason": str(exc),
                                   "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay)
                self._wake.set()

    async def _install(self, identity: ModelIdentity) -> None:
        assert self._fetcher is not None
        path = await self._fetcher.fetch(identity, self.store)
        model = await asyncio.to_thread(LiteRTModel, path, identity.model_name,
                                        identity.model_version, self.threads, identity.quantized)
        if self.wanted != identity:
            return  # a newer version was announced meanwhile; that one goes next
        self._swap(identity, model)
        self.store.set_current(identity)
        self.store.prune(identity)

    def _swap(self, identity: ModelIdentity, model: LiteRTModel) -> None:
        previous = self.version
        self.model, self.identity = model, identity
        self.switches.append(Switch(identity.model_version, time.monotonic(), time.time(),
                                    identity.quantized))
        log.info("device model swapped", extra={"from_version": previous,
                                                "to_version": identity.model_version,
                                                "quantized": identity.quantized})
