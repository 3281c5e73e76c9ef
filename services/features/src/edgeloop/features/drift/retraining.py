"""Starting one retraining sweep per drifted deployment, and noting what came of it.

The sweep trains on the deployment's labelled data since the drift began (the
earliest open event's window start) plus the serving model's own training snapshot,
so the new model knows the new world without forgetting the old one. It starts once
``min_samples`` labelled observations of the new world exist: a sweep on a handful of
frames would only be refused by the gate.
"""

from __future__ import annotations

import logging
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from psycopg_pool import AsyncConnectionPool

from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2, trainer_service_pb2_grpc
from edgeloop.features.drift.deployments import ActiveDeployment
from edgeloop.features.drift.events import DriftEvents
from edgeloop.features.drift.references import ReferenceCache
from edgeloop.platform import DEFAULT_DEADLINE_S

log = logging.getLogger(__name__)
STARTED_NOTE = "retraining: sweep"
_FINISHED = {sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep_pb2.SWEEP_STATE_FAILED,
             sweep_pb2.SWEEP_STATE_CANCELLED}


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def outcome_note(sweep: sweep_pb2.Sweep) -> str:
    """What a finished sweep means for the events that started it."""
    if sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED and sweep.promoted:
        return f"retrained by sweep {sweep.sweep_id}: version {sweep.model_version} promoted"
    if sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED:
        return (f"retrained by sweep {sweep.sweep_id}: version {sweep.model_version} refused by "
                f"the gate: {sweep.promotion_note}")
    state = sweep_pb2.SweepState.Name(sweep.state).removeprefix("SWEEP_STATE_").lower()
    return f"retraining sweep {sweep.sweep_id} {state}: {sweep.error or 'no reason given'}"


class Retrainer:
    """Starts and follows the retraining sweeps of drifted deployments."""

    def __init__(self, pool: AsyncConnectionPool, trainer: trainer_service_pb2_grpc.TrainerServiceStub,
                 references: ReferenceCache, min_samples: int) -> None:
        self.pool = pool
        self.events = DriftEvents(pool)
        self.trainer = trainer
        self.references = references
        self.min_samples = min_samples
        self.running: dict[str, str] = {}
        """deployment → the sweep retraining it now."""

    async def follow(self, deployment: ActiveDeployment, now: datetime) -> None:
        """Note finished sweeps, then start one if the deployment drifted and none runs."""
        if deployment.name not in self.running:
            await self._recover_running(deployment.name)
        if deployment.name in self.running:
            await self._check_running(deployment.name)
        if not deployment.model_name:
            return
        waiting = [e for e in await self.events.open_events(deployment.name) if not e.sweep_id]
        if not waiting:
            return
        if deployment.name in self.running:
            # Drift seen while the deployment retrains is answered by that same sweep.
            sweep_id = self.running[deployment.name]
            await self.events.attach_sweep([e.event_id for e in waiting], sweep_id, "",
                                           f"{STARTED_NOTE} {sweep_id} started")
            return
        since = min(e.window_start for e in waiting)
        if await self._labelled_since(deployment.name, since) < self.min_samples:
            return
        await self._start(deployment, [e.event_id for e in waiting], since)

    async def _labelled_since(self, deployment: str, since: datetime) -> int:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT count(*) FROM features.observations WHERE deployment = %s "
                                        "AND time >= %s AND sensor_mm IS NOT NULL", (deployment, since))
            return int((await cursor.fetchone())[0])

    async def _start(self, deployment: ActiveDeployment, event_ids: list[str], since: datetime) -> None:
        snapshot = self.references.snapshot_of(deployment.model_name, deployment.model_version)
        data = sweep_pb2.DataSelection(deployments=[deployment.name], start_time=_timestamp(since),
                                       include_snapshots_of=[snapshot] if snapshot else [])
        request = trainer_service_pb2.StartSweepRequest(
            model_name=deployment.model_name, trigger=f"drift:{event_ids[-1]}", data=data,
            deployment=deployment.name, promote=True)
        try:
            reply = await self.trainer.StartSweep(request, timeout=DEFAULT_DEADLINE_S)
        except aio.AioRpcError as exc:
            log.warning("could not start a retraining sweep; retrying next interval",
                        extra={"code": exc.code().name, "details": exc.details()})
            return
        sweep = reply.sweep
        self.running[deployment.name] = sweep.sweep_id
        await self.events.attach_sweep(event_ids, sweep.sweep_id, sweep.trace_id,
                                       f"{STARTED_NOTE} {sweep.sweep_id} started")
        log.info("retraining started", extra={"sweep_id": sweep.sweep_id, "events": event_ids})

    async def _recover_running(self, deployment: str) -> None:
        # After a restart the in-memory map is empty; the events remember the sweep.
        for event in await self.events.open_events(deployment):
            if event.sweep_id and event.note.startswith(STARTED_NOTE):
                self.running[deployment] = event.sweep_id
                return

    async def _check_running(self, deployment: str) -> None:
        sweep_id = self.running[deployment]
        try:
            reply = await self.trainer.GetSweep(trainer_service_pb2.GetSweepRequest(sweep_id=sweep_id),
                                                timeout=DEFAULT_DEADLINE_S)
        except aio.AioRpcError as exc:
            log.warning("cannot follow the retraining sweep", extra={"sweep_id": sweep_id,
                                                                     "code": exc.code().name})
            return
        if reply.sweep.state in _FINISHED:
            await self.events.note(sweep_id, outcome_note(reply.sweep), reply.sweep.trace_id)
            del self.running[deployment]
            log.info("retraining finished", extra={"sweep_id": sweep_id,
                                                   "note": outcome_note(reply.sweep)})
