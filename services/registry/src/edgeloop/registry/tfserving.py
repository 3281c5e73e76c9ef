"""Live reload of TF Serving through its ModelService, in two steps.

TF Serving refuses a version label that points at a version it has not loaded. So a
new config is applied as (1) the new versions added, labels left where they were and
nothing unloaded, then, once ``GetModelStatus`` reports every new version AVAILABLE,
(2) the config itself, which moves the labels and unloads what is no longer needed.
Reloads run one at a time in a background task; the newest config wins, and a failed
reload is retried with backoff until a newer config replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from edgeloop.platform import DEFAULT_DEADLINE_S, open_channel
from edgeloop.platform.errors import Unavailable
from edgeloop.registry.model_service import ModelServiceClient
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

log = logging.getLogger(__name__)


def loading_step(target: ModelServerConfig,
                 previous: ModelServerConfig | None) -> ModelServerConfig:
    """Step 1: ``target``'s versions plus those ``previous`` labels, with ``previous``'s labels."""
    before = {m.name: m for m in previous.model_config_list.config} if previous else {}
    step = ModelServerConfig()
    for model in target.model_config_list.config:
        entry = step.model_config_list.config.add()
        entry.CopyFrom(model)
        entry.ClearField("version_labels")
        old = before.get(model.name)
        if old is not None:
            versions = (set(model.model_version_policy.specific.versions)
                        | set(old.version_labels.values()))
            entry.model_version_policy.specific.ClearField("versions")
            entry.model_version_policy.specific.versions.extend(sorted(versions))
            for label, version in old.version_labels.items():
                entry.version_labels[label] = version
    # Models no longer needed stay loaded until step 2: gateways may still be routing to them.
    targets = {m.name for m in target.model_config_list.config}
    for name, old in sorted(before.items()):
        if name not in targets:
            step.model_config_list.config.add().CopyFrom(old)
    return step


class ServingReloader:
    """Applies model server configs to one TF Serving, newest first, one at a time."""

    def __init__(self, address: str, load_timeout_s: float,
                 previous: ModelServerConfig | None = None, poll_s: float = 0.25) -> None:
        self.address = address
        self.load_timeout_s = load_timeout_s
        self.poll_s = poll_s
        self.applied = previous
        self._pending: ModelServerConfig | None = None
        self._wake = asyncio.Event()
        self._channel = open_channel(address)
        self._service = ModelServiceClient(self._channel)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task that applies submitted configs."""
        self._task = asyncio.create_task(self._run(), name="tfserving-reload")

    async def stop(self) -> None:
        """Stop the task and close the channel."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._channel.close()

    def submit(self, config: ModelServerConfig) -> None:
        """Ask for ``config`` to be applied; a newer submit replaces an unapplied one."""
        if self.applied is not None and config == self.applied and self._pending is None:
            return
        self._pending = config
        self._wake.set()

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            config, self._pending = self._pending, None
            if config is None:
                continue
            try:
                await self.apply(config)
                backoff = 1.0
            except (Unavailable, grpc.RpcError) as exc:
                log.error("TF Serving reload failed; retrying in %.0fs: %s", backoff, exc,
                          extra={"tfserving": self.address})
                if self._pending is None:
                    self._pending = config
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                self._wake.set()

    async def apply(self, config: ModelServerConfig) -> None:
        """Load new versions, wait until they are AVAILABLE, then move the labels."""
        step = loading_step(config, self.applied)
        await self._reload(step)
        await self._wait_available(config)
        if step != config:
            await self._reload(config)
        self.applied = config
        log.info("TF Serving reloaded", extra={"tfserving": self.address,
                                               "models": len(config.model_config_list.config)})

    async def _reload(self, config: ModelServerConfig) -> None:
        error_code, message = await self._service.reload(config, timeout=DEFAULT_DEADLINE_S)
        if error_code != 0:
            raise Unavailable(f"TF Serving refused the config: {message}")

    async def _wait_available(self, config: ModelServerConfig) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.load_timeout_s
        for model in config.model_config_list.config:
            wanted = set(model.model_version_policy.specific.versions)
            while not wanted <= await self._available(model.name):
                if loop.time() > deadline:
                    raise Unavailable(f"TF Serving did not load {model.name} versions "
                                      f"{sorted(wanted)} within {self.load_timeout_s}s")
                await asyncio.sleep(self.poll_s)

    async def _available(self, model: str) -> set[int]:
        try:
            return await self._service.available_versions(model, timeout=DEFAULT_DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return set()
            raise
