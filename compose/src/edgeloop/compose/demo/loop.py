"""The monitored phases: the world changes while the robot keeps driving, nobody touches it.

The robot drives live at 4 fps: the world the serving model knows for a warm-up, then the
phase's new world. The demo only watches: the features service's drift monitor must fire,
start a sweep, the registry's gate must promote the result and the gateway must switch.
Measured from the services' own records: detection delay (first frame of the new world →
first drift event's ``fired_at``), retraining (event → promotion), switch (promotion →
first prediction of the new version), and the errors before the change, right after it,
and after the switch. Phase 5 (red floor) is the thesis's closed loop; by default phases
2-4 run the same way (``--manual`` retrains them by hand, as the thesis did).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edgeloop.compose.demo import fleet
from edgeloop.compose.demo.drives import Drive, live_run
from edgeloop.compose.demo.phases import TITLES, Context
from edgeloop.compose.demo.records import (
    Record,
    answering_version,
    errors_of,
    list_records,
    wait_for_records,
)
from edgeloop.compose.demo.results import LoopResult, PhaseResult, TimelinePoint
from edgeloop.compose.demo.sweeps import (
    FINISHED,
    SweepOutcome,
    get_sweep,
    outcome,
    state_name,
    sweep_events,
)
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.edge_client.summary import format_delivery
from edgeloop.platform import DEFAULT_DEADLINE_S

log = logging.getLogger(__name__)


@dataclass
class Watch:
    """What the demo has seen of the loop so far (all times are wall-clock, UTC)."""

    started: datetime
    red_at: datetime | None = None
    event: observation_pb2.DriftEvent | None = None
    sweep: SweepOutcome | None = None
    """The retraining sweep whose version was promoted (or the last one that ended)."""
    serving_at: datetime | None = None
    new_version: str = ""
    false_alarms: list[observation_pb2.DriftEvent] = field(default_factory=list)
    runs_after_switch: int = 0
    settled_version: str = ""
    """A version newer than ``new_version`` that answered after the switch (the monitor's
    consolidation of the new world, or a further drift retrain)."""
    settled_at: datetime | None = None
    runs_settled: int = 0
    finished_sweeps: dict[str, SweepOutcome] = field(default_factory=dict)


async def drift_events(ctx: Context) -> list[observation_pb2.DriftEvent]:
    """The serving deployment's drift events, oldest first."""
    reply = await ctx.services.call("features", "ListDriftEvents", lambda: ctx.services.features
                                    .ListDriftEvents(fpb.ListDriftEventsRequest(
                                        deployment=ctx.serving, limit=100),
                                        timeout=DEFAULT_DEADLINE_S))
    return sorted(reply.events, key=lambda e: e.fired_at.ToDatetime())


def _fired(event: observation_pb2.DriftEvent) -> datetime:
    return event.fired_at.ToDatetime(tzinfo=UTC)


async def _look(ctx: Context, watch: Watch) -> None:
    """One look at the services: events, the sweeps they started, the outcome."""
    # Only this phase's events: earlier phases' detections are theirs.
    events = [e for e in await drift_events(ctx) if _fired(e) >= watch.started]
    if watch.red_at is None:
        watch.false_alarms = events
        return
    fresh = [e for e in events if _fired(e) >= watch.red_at]
    watch.false_alarms = [e for e in events if _fired(e) < watch.red_at]
    if watch.event is None and fresh:
        watch.event = fresh[0]
        delay = (_fired(fresh[0]) - watch.red_at).total_seconds()
        ctx.progress(f"  DRIFT: rule {fresh[0].rule} ({_kind(fresh[0])}) fired {delay:.0f} s "
                     "after the world changed "
                     f"({fresh[0].threshold}, value {fresh[0].values.get('value', 0):.3g})")
    if watch.new_version:
        return
    # Every sweep the monitor started for the new world; the first promoted one counts
    # (a failed or refused retrain leaves its events open and the monitor may try again).
    for sweep_id in dict.fromkeys(e.sweep_id for e in fresh if e.sweep_id):
        if sweep_id in watch.finished_sweeps:
            continue
        sweep = await get_sweep(ctx.services, sweep_id)
        if sweep.state not in FINISHED:
            trials = sum(1 for t in sweep.trials if t.state == "TERMINATED")
            ctx.progress(f"  sweep {sweep_id} (started by the monitor) {state_name(sweep.state)}, "
                         f"{trials}/{sweep.num_trials} trials done")
            continue
        ended = outcome(sweep, await sweep_events(ctx.services, sweep_id))
        watch.finished_sweeps[sweep_id] = ended
        watch.sweep = ended
        if ended.promoted:
            watch.new_version = sweep.model_version
            ctx.progress(f"  sweep {sweep_id}: version {sweep.model_version} promoted by the gate")
            return
        ctx.progress(f"  sweep {sweep_id} ended without a promotion: {_why(sweep)}")


def _kind(event: observation_pb2.DriftEvent) -> str:
    return observation_pb2.DriftKind.Name(event.kind).removeprefix("DRIFT_KIND_").lower()


def _why(sweep: sweep_pb2.Sweep) -> str:
    if sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED:
        return f"version {sweep.model_version} refused by the gate: {sweep.promotion_note}"
    return f"{state_name(sweep.state)}: {_plain(sweep.error)}"


def _plain(text: str) -> str:
    """Text without terminal colour codes (Ray puts them into error messages)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


async def _check_switch(ctx: Context, watch: Watch, drive: Drive) -> None:
    if not watch.new_version or watch.serving_at is not None:
        return
    records = await list_records(ctx.services, ctx.serving, ctx.robot().device_id,
                                 watch.red_at or watch.started, drive.end)
    first = [r for r in records if r.model_version == watch.new_version]
    if first:
        watch.serving_at = min(r.received_at for r in first)
        ctx.progress(f"  SWITCH: the gateway answers with version {watch.new_version}")


async def closed_loop(ctx: Context) -> tuple[PhaseResult, LoopResult]:
    """Phase 5: live beige, then the red floor; drive until the retrained model serves."""
    cfg = ctx.config
    return await monitored_phase(ctx, 5, "beige", cfg.scenarios[5], cfg.warmup_s)


async def monitored_phase(ctx: Context, number: int, before: str, after: str,
                          warmup_s: float) -> tuple[PhaseResult, LoopResult]:
    """Drive ``before`` live for ``warmup_s``, then ``after`` until the retrained model serves
    (or the time runs out); measure it all."""
    cfg = ctx.config
    result = PhaseResult(number, TITLES[number], after, version_before=ctx.champion)
    watch = Watch(started=datetime.now(UTC))
    ctx.progress(f"live {before} for {warmup_s:.0f} s, then {after}; no human step")
    deadline: float | None = None
    runs = 0
    while True:
        scenario = before if watch.red_at is None and \
            (datetime.now(UTC) - watch.started).total_seconds() < warmup_s else after
        if scenario != before and watch.red_at is None:
            watch.red_at = datetime.now(UTC)
            deadline = time.monotonic() + cfg.red_timeout_s
            ctx.progress(f"  the world is {scenario} now")
        drive = await live_run(ctx.services.gateway_addr, ctx.robot(), scenario, ctx.next_seed(),
                               cfg.fps, tls=ctx.services.tls)
        runs += 1
        ctx.progress(f"  live run {runs} ({scenario}): {format_delivery(drive.summary.delivery)}")
        await _look(ctx, watch)
        await _check_switch(ctx, watch, drive)
        if watch.serving_at is not None:
            watch.runs_after_switch += 1
            if watch.runs_after_switch > cfg.after_switch_runs and \
                    await _settled(ctx, watch, drive):
                break
        if deadline is not None and time.monotonic() > deadline:
            result.note = _missing(watch, cfg.red_timeout_s)
            ctx.progress(f"  giving up: {result.note}")
            break
    return await _measure(ctx, watch, result)


async def _settled(ctx: Context, watch: Watch, drive: Drive) -> bool:
    """Whether the phase may end: its settled version measured, or not waited for (any more)."""
    timeout_s = ctx.config.settle_timeout_s
    assert watch.serving_at is not None
    if watch.settled_version:
        watch.runs_settled += 1
        return watch.runs_settled > ctx.config.after_switch_runs
    if not timeout_s:
        return True
    records = await list_records(ctx.services, ctx.serving, ctx.robot().device_id,
                                 drive.start, drive.end)
    newer = sorted({r.model_version for r in records if _newer(r.model_version,
                                                               watch.new_version)}, key=int)
    if newer:
        watch.settled_version = newer[0]
        watch.settled_at = min(r.received_at for r in records if r.model_version == newer[0])
        ctx.progress(f"  SETTLED: the gateway answers with version {newer[0]}")
        return False
    waited = (datetime.now(UTC) - watch.serving_at).total_seconds()
    if waited > timeout_s:
        ctx.progress(f"  no newer version {timeout_s:.0f} s after the switch; the phase ends")
        return True
    return False


def _newer(version: str, than: str) -> bool:
    return version.isdigit() and than.isdigit() and int(version) > int(than)


def _missing(watch: Watch, timeout_s: float) -> str:
    if watch.event is None:
        return f"no drift event within {timeout_s:.0f} s of the change"
    if not watch.new_version:
        tried = "; ".join(f"sweep {sweep_id}: {_why(ended.sweep)}"
                          for sweep_id, ended in watch.finished_sweeps.items())
        return (f"no retrained version promoted within {timeout_s:.0f} s of the change"
                + (f" ({tried})" if tried else ""))
    return f"the gateway did not switch to version {watch.new_version} in time"


async def _measure(ctx: Context, watch: Watch,
                   result: PhaseResult) -> tuple[PhaseResult, LoopResult]:
    end = datetime.now(UTC)
    records = await wait_for_records(ctx.services, ctx.serving, ctx.robot().device_id,
                                     watch.started, end, 1, timeout_s=30.0)
    red_at = watch.red_at or end
    pre = [r for r in records if r.time < red_at]
    switch = watch.serving_at or end
    right_after = [r for r in records if red_at <= r.time and r.received_at < switch]
    # "before" is the version that met the change: a retrain during the warm-up (a false
    # alarm) may have replaced the phase's first champion before the world changed
    old = answering_version(right_after) or result.version_before
    result.version_before = old
    after = [r for r in records if r.time >= red_at and r.model_version == watch.new_version]
    if watch.settled_version:
        result.version_settled = watch.settled_version
        result.settled = errors_of(records, watch.settled_version)
        result.onset_to_settled_s = _since(red_at, watch.settled_at)
        result.settled_trigger = next((v.tags.get("trigger", "") for v in
                                       await fleet.versions(ctx.services, ctx.model)
                                       if v.version == watch.settled_version), "")
    result.before = errors_of(right_after, old)
    result.errors_before = _errors(right_after, old)
    if watch.new_version:
        result.after = errors_of(after, watch.new_version)
        result.errors_after = _errors(after, watch.new_version)
    result.version_after = watch.new_version or old
    loop = LoopResult(pre_drift=errors_of(pre, old), phase=result.number)
    loop.red_at_s = _since(watch.started, watch.red_at)
    if watch.event is not None:
        loop.fired_at_s = _since(watch.started, _fired(watch.event))
        loop.rule, loop.event_id = watch.event.rule, watch.event.event_id
        loop.kind = _kind(watch.event)
    if watch.sweep is not None:
        result.sweep_id = watch.sweep.sweep.sweep_id
        result.promoted = watch.sweep.promoted
        loop.promoted_at_s = _since(watch.started, watch.sweep.promoted_at)
    loop.serving_at_s = _since(watch.started, watch.serving_at)
    loop.false_alarms = [f"{e.rule} at {_fired(e).isoformat(timespec='seconds')}"
                         for e in watch.false_alarms]
    loop.events = [_event_row(e, watch.started) for e in await drift_events(ctx)
                   if _fired(e) >= watch.started]
    loop.timeline = [_point(r, watch.started) for r in records]
    result.detection_s, result.retrain_s = loop.detection_s, loop.retrain_s
    result.serving_s = loop.switch_s
    result.onset_to_serving_s = loop.onset_to_serving_s
    result.rule, result.rule_kind = loop.rule, loop.kind
    result.false_alarms = list(loop.false_alarms)
    if watch.new_version:
        ctx.champion = await fleet.champion(ctx.services, ctx.model) or watch.new_version
    return result, loop


def _errors(records: list[Record], version: str) -> list[float]:
    return [r.error_mm for r in records if r.error_mm is not None and r.model_version == version]


def _since(start: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else (moment - start).total_seconds()


def _point(record: Record, start: datetime) -> TimelinePoint:
    return TimelinePoint(_since(start, record.time) or 0.0, record.saturation,
                         record.prediction_mm, record.sensor_mm, record.error_mm,
                         record.model_version)


def _event_row(event: observation_pb2.DriftEvent, start: datetime) -> dict:
    return {"rule": event.rule, "fired_at_s": _since(start, _fired(event)),
            "kind": observation_pb2.DriftKind.Name(event.kind).removeprefix("DRIFT_KIND_").lower(),
            "value": event.values.get("value"), "threshold": event.threshold,
            "model_version": event.model_version, "sweep_id": event.sweep_id,
            "note": _plain(event.note)}
