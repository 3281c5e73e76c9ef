"""The registry's current state as watchers and model hosts see it.

``refresh`` re-reads deployments and devices from PostgreSQL and versions and aliases
from MLflow, resolves every deployment's arms, rewrites ``models.config`` (and hands
it to TF Serving), then broadcasts what changed since the last refresh. Mutating RPCs
call it after their transaction commits. Changes made by another registry instance reach
this one's watchers through PostgreSQL: triggers (migration 0002) NOTIFY channel
``edgeloop_registry`` at every commit that touches what watchers follow, and
:meth:`Catalog.start` LISTENs on a dedicated connection and refreshes at once (several
notifications during one refresh cause one more). A background task also refreshes every
``EDGELOOP_REFRESH_INTERVAL_S``, for what PostgreSQL cannot announce (an alias moved in the
MLflow UI) and as a safety net while the listening connection is down. Diffing against
the last state (rather than announcing each write) means a failed refresh loses nothing:
the next one sends the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import psycopg
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.registry import deployments, devices, hostconfig
from edgeloop.registry.mlflow_registry import ModelRegistry
from edgeloop.registry.resolution import Resolution, resolve
from edgeloop.registry.selectors import ModelState
from edgeloop.registry.tfserving import ServingReloader
from edgeloop.registry.watch import Message, Watchers
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)
Fleet = dict[str, tuple[str, bool, Any]]
CHANNEL = "edgeloop_registry"
"""The NOTIFY channel of migration 0002's triggers."""
MAX_LISTEN_BACKOFF_S = 10.0


class Catalog:
    """Resolved deployments, device assignments, the host config, and their watchers."""

    def __init__(self, pool: AsyncConnectionPool, registry: ModelRegistry, repository: Path,
                 serving_base: str, reloader: ServingReloader | None = None) -> None:
        self.pool = pool
        self.registry = registry
        self.repository = repository
        self.serving_base = serving_base
        self.reloader = reloader
        self.watchers = Watchers(self.snapshot)
        self._deployments: dict[str, deployment_pb2.Deployment] = {}
        self._fleet: Fleet = {}
        self._conflicts: list[str] = []
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._submitted: Any = None
        self.listening = asyncio.Event()
        """Set while the LISTEN connection is up (tests wait on it)."""

    async def resolve_all(self) -> Resolution:
        """Every stored deployment resolved against the registry now (no side effects)."""
        async with self.pool.connection() as conn:
            stored = await deployments.list_all(conn)
        return await self._resolve(stored)

    async def _resolve(self, stored: list[deployment_pb2.Deployment]) -> Resolution:
        names = sorted({d.model_name for d in stored if d.model_name})
        states = await asyncio.to_thread(self._states, names)
        return resolve(stored, states, str(self.repository))

    def _states(self, names: list[str]) -> dict[str, ModelState]:
        return {name: self.registry.state(name) for name in names}

    async def refresh(self) -> Resolution:
        """Re-read, resolve, publish the host config, broadcast the difference."""
        async with self._lock:
            async with self.pool.connection() as conn:
                stored = await deployments.list_all(conn)
                fleet = await devices.fleet_state(conn)
            resolution = await self._resolve(stored)
            config = hostconfig.build(resolution, self.serving_base or str(self.repository))
            await asyncio.to_thread(hostconfig.write, self.repository, config)
            # Only a changed config goes to TF Serving: refreshes come often (every change
            # notification from any instance), and each reload is two round trips.
            if self.reloader is not None and config != self._submitted:
                self.reloader.submit(config)
                self._submitted = config
            self._report_conflicts(resolution.conflicts)
            message = self._difference(resolution, fleet)
            self._deployments = {d.name: d for d in resolution.deployments}
            self._fleet = fleet
            if message.deployments or message.assignments or message.revoked_device_ids:
                self.watchers.broadcast(message)
            return resolution

    async def refresh_quietly(self) -> None:
        """``refresh`` after a committed change; a failure is logged, the next one catches up."""
        try:
            await self.refresh()
        except Exception:
            log.exception("refresh failed; watchers get the change at the next refresh")

    def _difference(self, resolution: Resolution, fleet: Fleet) -> Message:
        message = Message()
        for deployment in resolution.deployments:
            if self._deployments.get(deployment.name) != deployment:
                message.deployments.append(deployment)
        for device_id, (deployment, revoked, rotated_at) in sorted(fleet.items()):
            before = self._fleet.get(device_id)
            if revoked:
                if before is not None and not before[1]:
                    message.revoked_device_ids.append(device_id)
                continue
            if before is not None and before[2] != rotated_at:
                message.revoked_device_ids.append(device_id)
            if (before[0] if before else "") != deployment:
                message.assignments.add(device_id=device_id, deployment=deployment)
        return message

    def _report_conflicts(self, conflicts: list[str]) -> None:
        if conflicts != self._conflicts:
            for conflict in conflicts:
                log.warning("version label conflict: %s", conflict)
        self._conflicts = conflicts

    def snapshot(self) -> Message:
        """Every deployment (resolved) and every assignment of a device that may stream."""
        message = Message(snapshot=True)
        message.deployments.extend(self._deployments[name] for name in sorted(self._deployments))
        for device_id, (deployment, revoked, _) in sorted(self._fleet.items()):
            if deployment and not revoked:
                message.assignments.add(device_id=device_id, deployment=deployment)
        return message

    def resolved(self, stored: deployment_pb2.Deployment) -> deployment_pb2.Deployment:
        """``stored`` with its resolved arms from the last refresh, if that saw this revision."""
        cached = self._deployments.get(stored.name)
        if cached is not None and cached.revision == stored.revision:
            return cached
        return stored

    def start(self, interval_s: float) -> None:
        """Refresh on every change notification, and every ``interval_s``, in the background."""
        self._tasks = [asyncio.create_task(self._every(interval_s), name="catalog-refresh"),
                       asyncio.create_task(self._listen(), name="catalog-listen"),
                       asyncio.create_task(self._refresh_on_change(), name="catalog-notified")]

    async def _every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh_quietly()

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection; reconnect with backoff when it breaks."""
        backoff = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.pool.conninfo,
                                                                 autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff = 0.2
                    self._changed.set()  # changes made while not listening
                    async for _ in conn.notifies():
                        self._changed.set()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("change notifications lost; reconnecting",
                            extra={"error": str(exc), "retry_in_s": backoff})
            finally:
                self.listening.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_LISTEN_BACKOFF_S)

    async def _refresh_on_change(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            started = time.monotonic()
            await self.refresh_quietly()
            log.debug("refreshed on a change notification",
                      extra={"seconds": round(time.monotonic() - started, 3)})

    async def stop(self) -> None:
        """Stop the background refreshes and the listening connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
