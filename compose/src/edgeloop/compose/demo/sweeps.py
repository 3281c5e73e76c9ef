"""Retraining through the trainer: start a sweep, follow it, and read what came of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeloop.compose.demo.config import SweepSize
from edgeloop.compose.demo.services import DemoError, Services
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2
from edgeloop.platform import DEFAULT_DEADLINE_S
from grpc import aio

log = logging.getLogger(__name__)
S = sweep_pb2
FINISHED = {S.SWEEP_STATE_SUCCEEDED, S.SWEEP_STATE_FAILED, S.SWEEP_STATE_CANCELLED}
Progress = Callable[[str], None]
START_SWEEP_DEADLINE_S = 180.0


@dataclass(frozen=True)
class SweepOutcome:
    """A finished sweep and the moments that matter for the evaluation."""

    sweep: sweep_pb2.Sweep
    created_at: datetime
    finished_at: datetime | None
    promoted_at: datetime | None
    """When the registry's gate promoted the version (the PROMOTION event), if it did."""

    @property
    def promoted(self) -> bool:
        return self.sweep.state == S.SWEEP_STATE_SUCCEEDED and self.sweep.promoted

    @property
    def seconds(self) -> float | None:
        """Request to promotion (or to the end when nothing was promoted)."""
        end = self.promoted_at or self.finished_at
        return None if end is None else (end - self.created_at).total_seconds()


def search_space(size: SweepSize) -> sweep_pb2.SearchSpace:
    """The demo's search space for manual sweeps."""
    return sweep_pb2.SearchSpace(learning_rates=size.learning_rates, batch_sizes=size.batch_sizes,
                                 dropouts=size.dropouts, epochs=size.epochs)


def state_name(state: int) -> str:
    return S.SweepState.Name(state).removeprefix("SWEEP_STATE_").lower()


async def start_sweep(services: Services, model: str, deployment: str, data: S.DataSelection,
                      size: SweepSize, seed: int, trigger: str) -> sweep_pb2.Sweep:
    """Queue a sweep that promotes its best version through the registry's gate."""
    request = trainer_service_pb2.StartSweepRequest(
        model_name=model, trigger=trigger, data=data, search_space=search_space(size),
        num_trials=size.trials, max_concurrent_trials=size.max_concurrent,
        deployment=deployment, seed=seed, promote=True)
    # StartSweep counts the selected observations first, and the trainer's first call
    # imports TensorFlow: on a busy 2-core machine that takes far longer than a plain call.
    reply = await services.call("trainer", "StartSweep", lambda: services.trainer.StartSweep(
        request, timeout=START_SWEEP_DEADLINE_S))
    return reply.sweep


async def follow_sweep(services: Services, sweep_id: str, progress: Progress,
                       timeout_s: float) -> SweepOutcome:
    """Print the sweep's progress until it ends; its outcome with the promotion time."""
    deadline = time.monotonic() + timeout_s
    events = await _watch(services, sweep_id, progress, timeout_s)
    sweep = await get_sweep(services, sweep_id)
    while sweep.state not in FINISHED:
        if time.monotonic() > deadline:
            raise DemoError(f"sweep {sweep_id} did not finish within {timeout_s:.0f} s "
                            f"(state {state_name(sweep.state)}); see the trainer's log")
        await asyncio.sleep(5.0)
        sweep = await get_sweep(services, sweep_id)
    if not events:
        events = await _watch(services, sweep_id, lambda _: None, 60.0)
    return outcome(sweep, events)


def outcome(sweep: sweep_pb2.Sweep, events: list[sweep_pb2.SweepEvent]) -> SweepOutcome:
    """The outcome of a finished sweep from the sweep and its progress events."""
    promoted_at = next((e.time.ToDatetime(tzinfo=UTC) for e in events
                        if e.type == S.SWEEP_EVENT_TYPE_PROMOTION and sweep.promoted), None)
    finished = sweep.finished_at.ToDatetime(tzinfo=UTC) if sweep.HasField("finished_at") else None
    if sweep.promoted and promoted_at is None:
        promoted_at = finished
    return SweepOutcome(sweep, sweep.created_at.ToDatetime(tzinfo=UTC), finished, promoted_at)


async def get_sweep(services: Services, sweep_id: str) -> sweep_pb2.Sweep:
    """The sweep as the trainer has it now."""
    reply = await services.call("trainer", "GetSweep", lambda: services.trainer.GetSweep(
        trainer_service_pb2.GetSweepRequest(sweep_id=sweep_id), timeout=DEFAULT_DEADLINE_S))
    return reply.sweep


async def sweep_events(services: Services, sweep_id: str) -> list[sweep_pb2.SweepEvent]:
    """Every recorded event of a finished sweep."""
    return await _watch(services, sweep_id, lambda _: None, 60.0)


async def _watch(services: Services, sweep_id: str, progress: Progress,
                 timeout_s: float) -> list[sweep_pb2.SweepEvent]:
    events: list[sweep_pb2.SweepEvent] = []
    call = services.trainer.WatchSweep(trainer_service_pb2.WatchSweepRequest(sweep_id=sweep_id),
                                       timeout=timeout_s)
    try:
        async for reply in call:
            events.append(reply.event)
            line = describe_event(reply.event)
            if line:
                progress(line)
    except aio.AioRpcError as exc:
        # The stream may hit its deadline on a slow machine; GetSweep polling takes over.
        log.warning("sweep watch ended early", extra={"sweep_id": sweep_id,
                                                      "status": exc.code().name})
        if exc.code().name in ("UNAVAILABLE", "UNIMPLEMENTED"):
            raise services.failure("trainer", "WatchSweep", exc) from exc
    return events


def describe_event(event: sweep_pb2.SweepEvent) -> str:
    """One progress line for the events worth showing (not every epoch of every trial)."""
    kind = event.type
    if kind == S.SWEEP_EVENT_TYPE_EPOCH:
        mae = event.metrics.get("val_mae_mm")
        return f"trial {event.trial_id} epoch {event.epoch}: val MAE {mae:.1f} mm" if mae else ""
    if kind in (S.SWEEP_EVENT_TYPE_STATE_CHANGED, S.SWEEP_EVENT_TYPE_SNAPSHOT_BUILT,
                S.SWEEP_EVENT_TYPE_TRIAL_FINISHED, S.SWEEP_EVENT_TYPE_VERSION_REGISTERED,
                S.SWEEP_EVENT_TYPE_PROMOTION, S.SWEEP_EVENT_TYPE_WAITING):
        return event.message
    return ""
