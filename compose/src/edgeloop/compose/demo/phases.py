"""The five phases of the thesis evaluation, on the live stack.

Phases 1-4 retrain by hand, as the thesis did: drive the new world with the champion
(MAE before), sweep on that data plus the champion's own training snapshot, let the
registry's gate promote, wait for the gateway to serve the new version, drive fresh runs
(MAE after). Phase 5 is the closed loop: :mod:`edgeloop.compose.demo.loop`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from edgeloop.compose.demo import fleet
from edgeloop.compose.demo.config import DemoConfig
from edgeloop.compose.demo.drives import Device, Drive, HistoryClock, replay
from edgeloop.compose.demo.records import Record, errors_of, timestamp, wait_for_records
from edgeloop.compose.demo.results import PhaseResult
from edgeloop.compose.demo.services import DemoError, Services
from edgeloop.compose.demo.sweeps import SweepOutcome, follow_sweep, start_sweep, state_name
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.edge_client.summary import RunSummary, format_delivery

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
TITLES = {1: "beige (training world)", 2: "label shift", 3: "covariate shift",
          4: "concept drift", 5: "closed loop (red floor)"}


@dataclass
class Context:
    """What the phases share: the stack, the sizes, the robot and the current champion."""

    services: Services
    config: DemoConfig
    progress: Progress
    model: str
    collect: str
    serving: str
    data_group: str
    clock: HistoryClock = field(default_factory=HistoryClock)
    device: Device | None = None
    champion: str = ""
    champion_sweep: str = ""
    seed: int = 1

    def next_seed(self) -> int:
        """A fresh simulator seed for every drive (fresh runs are never replays of old ones)."""
        self.seed += 1
        return self.config.seed * 1000 + self.seed

    def robot(self) -> Device:
        if self.device is None:
            raise DemoError("no device registered yet (phase 1 must run first)")
        return self.device


async def drive_and_read(ctx: Context, deployment: str, scenario: str, runs: int,
                         label: str, strict: bool = True) -> tuple[Drive, list[Record]]:
    """Replay ``runs`` runs and read their frames back from the features service."""
    def on_run(run: RunSummary) -> None:
        ctx.progress(f"  {label} run {run.run}/{runs}: {format_delivery(run.delivery)}")

    drive = await replay(ctx.services.gateway_addr, ctx.robot(), scenario, runs, ctx.next_seed(),
                         ctx.config.fps, ctx.clock, on_run, tls=ctx.services.tls)
    records = await wait_for_records(ctx.services, deployment, ctx.robot().device_id, drive.start,
                                     drive.end, drive.expected_records,
                                     timeout_s=120.0 if strict else 20.0, strict=strict)
    return drive, records


async def retrain(ctx: Context, data: sweep_pb2.DataSelection, trigger: str) -> SweepOutcome:
    """A manual sweep with promotion; the champion moves when the gate says so."""
    sweep = await start_sweep(ctx.services, ctx.model, ctx.serving, data, ctx.config.sweep,
                              ctx.config.seed, trigger)
    ctx.progress(f"  sweep {sweep.sweep_id} queued ({ctx.config.sweep.trials} trials)")
    result = await follow_sweep(ctx.services, sweep.sweep_id,
                                lambda line: ctx.progress(f"    {line}"),
                                ctx.config.sweep_timeout_s)
    final = result.sweep
    if final.state != sweep_pb2.SWEEP_STATE_SUCCEEDED:
        raise DemoError(f"sweep {final.sweep_id} {state_name(final.state)}: {final.error} "
                        "(see the trainer's log)")
    verdict = "promoted" if result.promoted else f"refused by the gate: {final.promotion_note}"
    ctx.progress(f"  sweep {final.sweep_id}: version {final.model_version} (holdout MAE "
                 f"{final.holdout_mae_mm:.1f} mm) {verdict}")
    if result.promoted:
        ctx.champion, ctx.champion_sweep = final.model_version, final.sweep_id
    return result


async def wait_serving(ctx: Context, version: str, scenario: str) -> float:
    """Probe with single runs until the gateway answers with ``version``; seconds waited."""
    started = time.monotonic()
    deadline = started + ctx.config.switch_timeout_s
    while True:
        _, records = await drive_and_read(ctx, ctx.serving, scenario, 1, "probe", strict=False)
        served = {r.model_version for r in records if r.prediction_mm is not None}
        if version in served:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise DemoError(f"the gateway still serves {sorted(served) or 'nothing'} "
                            f"{ctx.config.switch_timeout_s:.0f} s after version {version} was "
                            "promoted; see the gateway's and the registry's logs")
        await asyncio.sleep(3.0)


def _selection(deployment: str, drive: Drive, snapshots: list[str]) -> sweep_pb2.DataSelection:
    return sweep_pb2.DataSelection(deployments=[deployment], start_time=timestamp(drive.start),
                                   end_time=timestamp(drive.end), include_snapshots_of=snapshots)


async def phase_one(ctx: Context) -> PhaseResult:
    """Collect beige without a model, train v1, serve it, validate on fresh beige runs."""
    result = PhaseResult(1, TITLES[1], "beige")
    await fleet.create_deployment(ctx.services, ctx.collect, ctx.data_group,
                                  description="edgeloop demo: data collection without a model")
    ctx.device = await fleet.register_device(ctx.services, "demo-robot", ctx.collect)
    ctx.progress(f"device {ctx.device.device_id} collects on {ctx.collect} (no model)")
    drive, records = await drive_and_read(ctx, ctx.collect, "beige", ctx.config.collect_runs,
                                          "collect")
    labelled = sum(1 for r in records if r.sensor_mm is not None)
    ctx.progress(f"collected {len(records)} frames ({labelled} labelled); training v1")
    outcome = await retrain(ctx, _selection(ctx.collect, drive, []), "demo:phase1")
    result.sweep_id, result.promoted = outcome.sweep.sweep_id, outcome.promoted
    result.retrain_s, result.version_after = outcome.seconds, outcome.sweep.model_version
    if not outcome.promoted:
        raise DemoError(f"v1 was not promoted: {outcome.sweep.promotion_note}")
    await fleet.create_deployment(ctx.services, ctx.serving, ctx.data_group, ctx.model,
                                  "edgeloop demo: the champion, direct")
    await fleet.assign(ctx.services, ctx.robot(), ctx.serving)
    waited = await wait_serving(ctx, outcome.sweep.model_version, "beige")
    ctx.progress(f"{ctx.serving} serves version {ctx.champion} ({waited:.0f} s after promotion)")
    _, after = await drive_and_read(ctx, ctx.serving, "beige", ctx.config.validate_runs, "validate")
    result.after = errors_of(after, ctx.champion)
    result.errors_after = [r.error_mm for r in after if r.error_mm is not None
                           and r.model_version == ctx.champion]
    ctx.progress(f"phase 1 validation: {result.after.describe()}")
    await fleet.activate(ctx.services, ctx.collect, False)
    return result


async def drift_phase(ctx: Context, number: int) -> PhaseResult:
    """Drive the drifted world with the champion, retrain on it plus the champion's data."""
    scenario = ctx.config.scenarios[number]
    result = PhaseResult(number, TITLES[number], scenario, version_before=ctx.champion)
    drive, before = await drive_and_read(ctx, ctx.serving, scenario, ctx.config.drift_runs,
                                         "before")
    result.before = errors_of(before, ctx.champion)
    result.errors_before = [r.error_mm for r in before if r.error_mm is not None
                            and r.model_version == ctx.champion]
    ctx.progress(f"phase {number} before retraining (v{ctx.champion}): {result.before.describe()}")
    outcome = await retrain(ctx, _selection(ctx.serving, drive, [ctx.champion_sweep]),
                            f"demo:phase{number}")
    result.sweep_id, result.promoted = outcome.sweep.sweep_id, outcome.promoted
    result.retrain_s = outcome.seconds
    if not outcome.promoted:
        result.note = f"refused by the gate: {outcome.sweep.promotion_note}"
    else:
        await wait_serving(ctx, ctx.champion, scenario)
    result.version_after = ctx.champion
    _, after = await drive_and_read(ctx, ctx.serving, scenario, ctx.config.validate_runs, "after")
    result.after = errors_of(after, ctx.champion)
    result.errors_after = [r.error_mm for r in after if r.error_mm is not None
                           and r.model_version == ctx.champion]
    ctx.progress(f"phase {number} after retraining (v{ctx.champion}): {result.after.describe()}")
    return result


def now_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
