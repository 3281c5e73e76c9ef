"""The gateway's view of deployments, kept current by following ``WatchDeployments``.

The watch sends the full state first, then every change; on a broken stream the
watcher reconnects with backoff and takes the next snapshot as the new truth. Before a
deployment change takes traffic, every model version it names is loaded and warmed
up on the model host; versions no deployment names any more are released after a
grace period, so frames already routed to them finish (no frame meets a half-loaded
or a dropped model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.gateway.hosts.base import ModelHost, ModelKey
from edgeloop.gateway.routing import DeploymentView
from edgeloop.platform import bearer
from grpc import aio

log = logging.getLogger(__name__)

RELEASE_GRACE_S = 5.0
"""How long a version no deployment names stays loaded for frames already routed to it."""
MAX_BACKOFF_S = 10.0
UNASSIGNED = "unassigned"
"""The data group (and observation deployment) of frames from a device with no deployment.

Such frames are answered without a prediction and recorded under this name, so a robot
collecting data before it is assigned loses nothing; the registry refuses this name for
a deployment of its own.
"""


class ModelsNotReady(Exception):
    """Some deployment's model versions failed to load; the watch resyncs to retry."""


class DeploymentState:
    """Deployments and device assignments as last received from the registry."""

    def __init__(self) -> None:
        self.deployments: dict[str, DeploymentView] = {}
        self.assignments: dict[str, str] = {}
        self.synced = asyncio.Event()
        """Set once the first snapshot is applied."""
        self._changed = asyncio.Event()

    def change_event(self) -> asyncio.Event:
        """An event set at the next change of deployments or assignments (take it, then read)."""
        return self._changed

    def notify_changed(self) -> None:
        """Wake everyone waiting on :meth:`change_event` (e.g. streams sending ModelUpdates)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def deployment_of(self, device_id: str, fallback: str = "") -> str:
        """The device's deployment name: the watched assignment, else ``fallback`` (from auth),
        else :data:`UNASSIGNED`."""
        return self.assignments.get(device_id, fallback) or UNASSIGNED

    def get(self, name: str) -> DeploymentView | None:
        """The deployment called ``name``, if known."""
        return self.deployments.get(name)

    def model_keys(self) -> set[ModelKey]:
        """Every model version some deployment names."""
        return {key for view in self.deployments.values() for key in view.model_keys()}


class DeploymentWatcher:
    """Follows the registry's WatchDeployments stream and applies it to a state."""

    def __init__(self, channel: aio.Channel, registry_token: str, state: DeploymentState,
                 host: ModelHost, on_revoked: Callable[[list[str]], None],
                 watcher_name: str = "gateway", model_repository: str = "") -> None:
        self.stub = reg_grpc.RegistryServiceStub(channel)
        self.metadata = bearer(registry_token)
        self.state = state
        self.host = host
        self.on_revoked = on_revoked
        self.watcher_name = watcher_name
        self.model_repository = model_repository
        self._loaded: set[ModelKey] = set()
        self._task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()
        # Loading and releasing must not interleave: a release could otherwise drop a
        # version that a concurrent change has just decided to route to again.
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """Start following the registry in the background."""
        self._task = asyncio.create_task(self._run(), name="deployment-watcher")

    async def stop(self) -> None:
        """Stop following; loaded models stay for the host to close."""
        for task in [self._task, *self._releases]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except aio.AioRpcError as exc:
                log.warning("deployment watch broke; reconnecting",
                            extra={"code": exc.code().name, "detail": exc.details(),
                                   "retry_in_s": backoff})
            except Exception:
                log.exception("applying a deployment change failed; resyncing",
                              extra={"retry_in_s": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _follow(self) -> None:
        call = self.stub.WatchDeployments(
            reg_pb2.WatchDeploymentsRequest(watcher=self.watcher_name), metadata=self.metadata)
        async for change in call:
            await self.apply(change)

    async def apply(self, change: reg_pb2.WatchDeploymentsResponse) -> None:
        """Apply one snapshot or change: load new versions first, then switch, then release."""
        try:
            async with self._lock:
                await self._apply(change)
        finally:
            if change.revoked_device_ids:
                self.on_revoked(list(change.revoked_device_ids))
            self.state.synced.set()

    async def _apply(self, change: reg_pb2.WatchDeploymentsResponse) -> None:
        views = {d.name: DeploymentView.from_proto(d, self.model_repository)
                 for d in change.deployments}
        deployments = {} if change.snapshot else dict(self.state.deployments)
        failed = []
        for name, view in views.items():
            try:
                await self._load(view.model_keys())
                deployments[name] = view
            except Exception:
                # Keep the old routing of this deployment; the others switch. The watch
                # is then restarted, and the next snapshot retries the load.
                log.exception("model versions could not be loaded; keeping the old routing",
                              extra={"deployment": name})
                failed.append(name)
                if name in self.state.deployments:
                    deployments[name] = self.state.deployments[name]
        assignments = {} if change.snapshot else dict(self.state.assignments)
        for assignment in change.assignments:
            assignments[assignment.device_id] = assignment.deployment
        self.state.deployments, self.state.assignments = deployments, assignments
        self.state.notify_changed()
        self._schedule_releases()
        log.info("deployments updated", extra={"snapshot": change.snapshot,
                                               "changed": sorted(views),
                                               "assignments": len(change.assignments)})
        if failed:
            raise ModelsNotReady(f"deployments {failed} keep their old routing until their "
                                 "model versions load")

    async def _load(self, keys: set[ModelKey]) -> None:
        for key in sorted(keys - self._loaded, key=lambda k: (k.model_name, k.version)):
            await self.host.ensure_loaded(key)
            self._loaded.add(key)
            log.info("model version ready", extra={"model": key.model_name, "version": key.version})

    def _schedule_releases(self) -> None:
        unused = self._loaded - self.state.model_keys()
        if unused:
            task = asyncio.create_task(self._release_later(unused))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _release_later(self, keys: set[ModelKey]) -> None:
        await asyncio.sleep(RELEASE_GRACE_S)
        async with self._lock:
            for key in keys - self.state.model_keys():  # a version may be named again meanwhile
                if key not in self._loaded:
                    continue
                self._loaded.discard(key)
                await self.host.release(key)
                log.info("model version released",
                         extra={"model": key.model_name, "version": key.version})
