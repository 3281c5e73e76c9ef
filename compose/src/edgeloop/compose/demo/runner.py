"""Running the demo: bring the stack up, run the phases, write the report."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgeloop.compose.demo.config import DemoConfig
from edgeloop.compose.demo.loop import closed_loop, monitored_phase
from edgeloop.compose.demo.phases import Context, drift_phase, phase_one
from edgeloop.compose.demo.report import write_report
from edgeloop.compose.demo.results import DemoResult
from edgeloop.compose.demo.services import DemoError, Endpoint, Services, endpoints_from_rows
from edgeloop.compose.stack import local
from edgeloop.compose.stack.state import SECRETS_FILE, StackState
from edgeloop.compose.stack.topology import Topology
from edgeloop.platform.tls import ClientTLS

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
ALL_PHASES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class StackHandle:
    """The running stack the demo uses."""

    endpoints: dict[str, Endpoint]
    admin_token: str
    state_dir: Path
    tls: ClientTLS | None = None


def start_stack(state_dir: Path, progress: Progress, timeout_s: float = 300.0) -> StackHandle:
    """`edgeloop up` for the state folder; parts that died get one more start.

    A stack that already serves is used as it is: `local.up` checks the webhook and Ray
    dashboard ports as if they were free-standing parts, so it refuses a second start of a
    running stack whose trainer holds them.
    """
    topology = Topology.from_env(state_dir)
    rows = local.status(topology)
    if rows and all(row.status == "SERVING" for row in rows) and \
            {"registry", "features", "trainer", "gateway"} <= {row.name for row in rows}:
        progress("the stack is already running")
    else:
        rows = local.up(topology, progress, timeout_s)
    if any(row.status != "SERVING" for row in rows):
        progress("some parts are not serving; starting them once more")
        rows = local.up(topology, progress, timeout_s)
    broken = [row for row in rows if row.status != "SERVING"]
    if broken:
        detail = "; ".join(f"{row.name} is {row.status} (log: {row.detail})" for row in broken)
        raise DemoError(f"the stack is not healthy: {detail}")
    return StackHandle(endpoints_from_rows(rows, state_dir), _admin_token(state_dir), state_dir,
                       ClientTLS.from_env(StackState.load(state_dir).tls))


def _admin_token(state_dir: Path) -> str:
    path = state_dir / SECRETS_FILE
    try:
        return json.loads(path.read_text())["admin_token"]
    except (OSError, ValueError, KeyError) as exc:
        raise DemoError(f"no admin token in {path}: run `edgeloop up` first") from exc


def run_id(now: datetime) -> str:
    """A short id that keeps this run's model and deployments apart from earlier runs'."""
    return now.strftime("%m%d-%H%M%S")


async def run_phases(stack: StackHandle, config: DemoConfig, progress: Progress,
                     result: DemoResult, phases: tuple[int, ...] = ALL_PHASES) -> DemoResult:
    """Run ``phases`` in order, adding each phase's result to ``result`` as it finishes."""
    services = Services(stack.endpoints, stack.admin_token, stack.tls)
    suffix = result.model_name.removeprefix("demo-distance-")
    ctx = Context(services, config, progress, result.model_name, f"demo-collect-{suffix}",
                  result.deployment, "demo")
    try:
        for number in phases:
            progress(f"[bold]phase {number}[/bold]")
            if number == 1:
                result.phases.append(await phase_one(ctx))
            elif number in (2, 3, 4) and config.manual:
                result.phases.append(await drift_phase(ctx, number))
            elif number in (2, 3, 4):
                phase, loop = await monitored_phase(ctx, number, config.world_before(number),
                                                    config.scenarios[number],
                                                    config.phase_warmup_s)
                phase.monitored = True
                result.phases.append(phase)
                result.loops.append(loop)
            else:
                phase, loop = await closed_loop(ctx)
                phase.monitored = True
                result.phases.append(phase)
                result.loop = loop
                result.loops.append(loop)
        result.finished = True
    finally:
        await services.close()
    return result


def run_demo(state_dir: Path, config: DemoConfig, mode: str, progress: Progress,
             phases: tuple[int, ...] = ALL_PHASES) -> tuple[DemoResult, Path]:
    """Start the stack, run the phases, write the report (also when a phase failed)."""
    stack = start_stack(state_dir, progress)
    now = datetime.now(UTC)
    suffix = run_id(now)
    result = DemoResult(now.isoformat(timespec="seconds"), mode, f"demo-distance-{suffix}",
                        f"demo-parking-{suffix}")
    folder = state_dir / "demo" / suffix
    try:
        asyncio.run(run_phases(stack, config, progress, result, phases))
    except DemoError as exc:
        result.failure = str(exc)
        log.error("demo stopped", extra={"error": str(exc)})
        raise
    finally:
        report = write_report(result, folder)
        latest = state_dir / "report.md"
        latest.write_text(_relinked(report, folder, state_dir))
        progress(f"report: {latest} (plots and result.json in {folder})")
    return result, latest


def _relinked(report: Path, folder: Path, state_dir: Path) -> str:
    """report.md's text with plot links relative to the state folder."""
    prefix = folder.relative_to(state_dir).as_posix()
    return report.read_text().replace("](phase", f"]({prefix}/phase")
