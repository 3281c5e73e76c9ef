"""`edgeloop demo`: the thesis evaluation on the local stack, closed loop included."""

from __future__ import annotations

from pathlib import Path

import click
from edgeloop.compose.demo.config import DemoConfig
from edgeloop.compose.demo.report import console_table
from edgeloop.compose.demo.results import DemoResult
from edgeloop.compose.demo.runner import ALL_PHASES, run_demo
from edgeloop.compose.demo.services import DemoError
from edgeloop.compose.endpoints import state_dir as default_state_dir
from edgeloop.compose.stack.processes import PortTaken
from edgeloop.platform.errors import ConfigError
from rich.console import Console


def _phases(value: str) -> tuple[int, ...]:
    numbers = tuple(sorted({int(p) for p in value.split(",") if p.strip()}))
    if not numbers or any(n not in ALL_PHASES for n in numbers) or numbers[0] != 1:
        raise click.BadParameter("a comma-separated subset of 1-5 that includes 1")
    return numbers


@click.command("demo")
@click.option("--quick", is_flag=True, help="Fewer runs and smaller sweeps (about 20 minutes "
              "on a busy 2-core machine, mostly training; phase 5 stays live and waits for a "
              "real retrain).")
@click.option("--state", "state", type=click.Path(file_okay=False), default=None,
              help="State folder of the stack (default $EDGELOOP_STATE_DIR or .edgeloop).")
@click.option("--phases", default="1,2,3,4,5", show_default=True,
              help="Phases to run (phase 1 trains the first model, so it always runs).")
@click.option("--warmup", type=float, default=None,
              help="Phase 5: seconds of live beige driving before the floor turns red.")
@click.option("--on-device", is_flag=True, help="Live runs predict on the robot with LiteRT; "
              "robots download and swap to each promoted version on their own.")
@click.option("--quantized-model", is_flag=True, help="With --on-device: robots ask for each "
              "version's quantized twin (a quarter of the download, ~0.49 against 0.65 ms a "
              "frame) and run it once the gateway has checked it against the SavedModel.")
@click.option("--manual", is_flag=True, help="Retrain phases 2-4 by hand, as the thesis did "
              "(default: every drifted phase runs through the drift monitor with no human step).")
def command(quick: bool, state: str | None, phases: str, warmup: float | None,
            on_device: bool, quantized_model: bool, manual: bool) -> None:
    """Reproduce the thesis evaluation with the simulator on the local stack.

    Starts the stack (like `edgeloop up`), then: 1 collect beige without a model, train v1,
    validate; 2 label shift (beige-distant); 3 covariate shift (green floor); 4 concept
    drift (green, angled approach); 5 the floor turns red. In every drifted phase the robot
    drives live, the world changes, and the drift monitor detects it, a sweep retrains, the
    registry's gate promotes and the gateway switches, with no human step (--manual:
    phases 2-4 retrained by hand). Prints a thesis-style table (per phase: first rule and
    its kind, detection delay, change -> new version serving, errors, versions, false
    alarms) and writes report.md with plots into the state folder.
    """
    from dataclasses import replace

    config = DemoConfig.quick() if quick else DemoConfig.full()
    if warmup is not None:
        config = replace(config, warmup_s=warmup)
    config = replace(config, manual=manual)
    folder = Path(state).resolve() if state else default_state_dir()
    console = Console()
    if not console.is_terminal:
        # Piped into a file or a CI log: keep the thesis table one row per phase.
        console = Console(width=170)
    if quantized_model and not on_device:
        raise click.UsageError("--quantized-model is for robots that predict on the device: "
                               "add --on-device")
    log_file = _log_to_file(folder)
    if on_device:
        from edgeloop.compose.demo import on_device as device_inference

        device_inference.enable(folder, quantized=quantized_model)

    def progress(line: str) -> None:
        console.print(f"[dim]{_clock()}[/dim] {line}", highlight=False)

    result: DemoResult | None = None
    try:
        mode = ("quick" if quick else "full") + (", manual" if manual else "")
        result, report = run_demo(folder, config, mode, progress,
                                  _phases(phases))
    except (DemoError, PortTaken, ConfigError, ValueError) as exc:
        raise click.ClickException(f"{exc} (demo log: {log_file})") from exc
    console.print(console_table(result))
    for target in result.targets():
        console.print(f"  {target.describe()}")
    if on_device:
        for line in device_inference.report_lines():
            console.print(f"  {line}")
    console.print(f"report: {report}")


def _log_to_file(state: Path) -> Path:
    """The demo's own log goes to <state>/logs/demo.log, not into the terminal's table."""
    import logging

    from edgeloop.platform.logs import JsonFormatter

    path = state / "logs" / "demo.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter("demo"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return path


def _clock() -> str:
    from datetime import datetime

    return datetime.now().strftime("%H:%M:%S")
