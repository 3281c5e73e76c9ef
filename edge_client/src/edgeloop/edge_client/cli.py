"""``edgeloop-edge``: drive simulated (or real) runs against the gateway, render sample frames."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import logging
from pathlib import Path

import click
import cv2
from edgeloop.edge_client.camera.base import Camera, RangeSensor
from edgeloop.edge_client.control.parking import Mode, ParkingController
from edgeloop.edge_client.control.profile import SpeedProfile
from edgeloop.edge_client.control.signals import ConsoleSignals, GpioSignals, Signals
from edgeloop.edge_client.inference.onboard import Inference, Onboard, with_capability
from edgeloop.edge_client.scene.floor import FloorSpec, parse_rgb
from edgeloop.edge_client.scene.render import decode_jpeg
from edgeloop.edge_client.scene.scenarios import (
    SCENARIOS,
    ScenarioError,
    ScenarioPlan,
    get_scenario,
    resolve_plan,
)
from edgeloop.edge_client.simulate import drive_session, simulate_captures
from edgeloop.edge_client.stream.buffer import OfflineBuffer
from edgeloop.edge_client.stream.client import StreamClient, StreamClosed
from edgeloop.edge_client.stream.clock import RobotClock
from edgeloop.edge_client.summary import RunSummary, SessionSummary, format_delivery
from edgeloop.platform import ConfigError, configure_logging
from edgeloop.platform.tls import ClientTLS

DEFAULT_BUFFER = Path.home() / ".cache" / "edgeloop" / "edge-buffer.db"
DEFAULT_MODELS = Path.home() / ".cache" / "edgeloop" / "models"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--log-level", default="WARNING", envvar="EDGELOOP_LOG_LEVEL", show_default=True,
              help="Log level of the robot program (EDGELOOP_LOG_LEVEL).")
def main(log_level: str) -> None:
    """edgeloop's robot program and scene simulator."""
    configure_logging("edge", log_level.upper(), "text")


def _plan(scenario: str, floor_rgb: str | None, max_yaw: float | None, max_mm: float | None,
          change_at: float | None, change_to: str | None) -> ScenarioPlan:
    try:
        plan = resolve_plan(scenario)
        first = plan.steps[0][1]
        changes: dict[str, object] = {}
        if floor_rgb:
            changes["floor"] = FloorSpec(parse_rgb(floor_rgb), name="custom")
        if max_yaw is not None:
            changes["max_yaw_deg"] = max_yaw
        if max_mm is not None:
            changes["max_mm"] = max_mm
        if changes:
            first = dataclasses.replace(first, name=f"{first.name}+custom", **changes)
            plan = ScenarioPlan(((0.0, first), *plan.steps[1:]))
        if (change_at is None) != (change_to is None):
            raise ScenarioError("--change-at and --change-to go together")
        if change_at is not None and change_to is not None:
            plan = plan.then(change_at, resolve_plan(change_to).steps[0][1])
        return plan
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from exc


def tls_options(fn):  # noqa: ANN001, ANN201 - click decorator
    """TLS to the gateway: the CA that verifies it and, for mutual TLS, the device certificate."""
    for option in reversed([
        click.option("--tls-ca", envvar="EDGELOOP_TLS_CA", default="",
                     help="CA (PEM) that verifies the gateway; set, the stream uses TLS "
                          "(`edgeloop up` writes <state>/tls/ca.pem)."),
        click.option("--tls-cert", envvar="EDGELOOP_TLS_CLIENT_CERT", default="",
                     help="This device's certificate (PEM), for a gateway that requires one."),
        click.option("--tls-key", envvar="EDGELOOP_TLS_CLIENT_KEY", default="",
                     help="The key (PEM) of --tls-cert."),
    ]):
        fn = option(fn)
    return fn


def scenario_options(fn):  # noqa: ANN001, ANN201 - click decorator
    """The options that choose and customise a scenario."""
    for option in reversed([
        click.option("--scenario", default="beige", show_default=True,
                     help=f"One of {', '.join(SCENARIOS)}, or a YAML file."),
        click.option("--floor-rgb", help="Custom floor colour 'r,g,b' or '#rrggbb'."),
        click.option("--max-yaw", type=float, help="Largest wall angle in degrees (0-30)."),
        click.option("--max-mm", type=float, help="Farthest start distance in mm."),
        click.option("--change-at", type=float, help="Session time (s) of a scenario change."),
        click.option("--change-to", help="Scenario in force from --change-at on."),
        click.option("--seed", type=int, default=0, show_default=True),
    ]):
        fn = option(fn)
    return fn


@main.command()
@scenario_options
@click.option("--runs", type=int, default=1, show_default=True)
@click.option("--gateway", envvar="EDGELOOP_GATEWAY_ADDR", default="127.0.0.1:50050",
              show_default=True, help="Gateway host:port.")
@click.option("--device", envvar="EDGELOOP_DEVICE_ID", required=True, help="Registered device id.")
@click.option("--token", envvar="EDGELOOP_DEVICE_TOKEN", required=True, help="The device's token.")
@click.option("--fps", type=float, default=4.0, show_default=True)
@click.option("--realtime/--fast", default=True, show_default=True,
              help="Pace captures at --fps on the wall clock, or as fast as answers come.")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default="sensor",
              show_default=True, help="What steers the car: the model's prediction or the sensor.")
@click.option("--buffer", "buffer_path", type=click.Path(path_type=Path), default=DEFAULT_BUFFER,
              show_default=True, help="On-disk buffer for frames captured while offline.")
@click.option("--session-id", help="Resume a session (delivers its buffered frames).")
@click.option("--hardware", type=click.Choice(["none", "picamera", "opencv"]), default="none",
              show_default=True,
              help="Drive with a real camera and VL53L0X instead of the simulator.")
@click.option("--camera-source", default="0", show_default=True, help="OpenCV source (index/URL).")
@click.option("--i2c-bus", type=int, default=1, show_default=True)
@click.option("--gpio/--no-gpio", default=False, help="Buzzer/LED on GPIO 17/27 (Pi).")
@click.option("--inference", type=click.Choice([i.value for i in Inference]), default="server",
              show_default=True, help="Where frames are predicted: the gateway, the robot "
              "(LiteRT; the gateway only records), or the robot when it has a model.")
@click.option("--model-dir", type=click.Path(path_type=Path), default=DEFAULT_MODELS,
              show_default=True, help="The robot's verified model files (device/auto inference).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="LiteRT interpreter threads (default: all cores).")
@click.option("--quantized-model/--float-model", envvar="EDGELOOP_QUANTIZED_MODEL",
              default=False, show_default=True,
              help="Device/auto inference: run a version's quantized twin once the gateway "
              "offers it (a quarter of the download, about half the CPU; the gateway offers it "
              "when its answers are within 1 mm of the full model's on the frames it served).")
@click.option("--clock-from-gateway/--own-clock", envvar="EDGELOOP_CLOCK_FROM_GATEWAY",
              default=False, show_default=True,
              help="Stamp frames on the gateway's clock (told in every Welcome) instead of the "
              "robot's: for a robot that cannot reach an NTP server.")
@click.option("--clock-offset", "clock_offset_s", type=float, default=0.0, show_default=True,
              help="Simulated robot, real time: its clock this many seconds off the true time "
              "(negative: behind), as a robot without NTP; the gateway and the console say so.")
@tls_options
def drive(scenario: str, floor_rgb: str | None, max_yaw: float | None, max_mm: float | None,
          change_at: float | None, change_to: str | None, seed: int, runs: int, gateway: str,
          device: str, token: str, fps: float, realtime: bool, mode: str, buffer_path: Path,
          session_id: str | None, hardware: str, camera_source: str, i2c_bus: int,
          gpio: bool, inference: str, model_dir: Path, threads: int | None,
          quantized_model: bool, clock_from_gateway: bool, clock_offset_s: float, tls_ca: str,
          tls_cert: str, tls_key: str) -> None:
    """Drive runs toward the wall and stream every frame to the gateway."""
    try:
        tls = ClientTLS.from_values(tls_ca, tls_cert, tls_key)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        onboard = Onboard.create(Inference(inference), model_dir, threads, quantized_model)
        if clock_offset_s and (not realtime or hardware != "none"):
            raise click.UsageError("--clock-offset sets a simulated robot's clock in real time; "
                                   "--fast replays on a simulated clock, and a real car's "
                                   "clock is its own")
        if quantized_model and onboard.model is None:
            click.echo("note: --quantized-model applies to --inference device or auto; the "
                       "gateway answers every frame here", err=True)
        if onboard.model is not None:
            version = onboard.model.version or "none yet"
            twins = ", quantized twins when offered" if quantized_model else ""
            click.echo(f"on-device inference ({inference}{twins}): model {version} in "
                       f"{model_dir}")
        if hardware != "none":
            _drive_hardware(hardware, camera_source, i2c_bus, gpio, runs, gateway, device, token,
                            fps, Mode(mode), buffer_path, session_id, onboard, tls,
                            RobotClock(from_gateway=clock_from_gateway))
            return
        plan = _plan(scenario, floor_rgb, max_yaw, max_mm, change_at, change_to)
        summary = drive_session(gateway, device, token, plan, runs, seed, fps, realtime,
                                mode=Mode(mode), buffer_path=buffer_path, session_id=session_id,
                                tls=tls, on_run=_echo_run, onboard=onboard,
                                clock_offset_s=clock_offset_s,
                                clock_from_gateway=clock_from_gateway)
    except StreamClosed as exc:
        raise click.ClickException(f"the session ended: {exc}") from exc
    _echo_session(summary)


def _echo_run(run: RunSummary) -> None:
    click.echo(f"run {run.run:3d} [{run.scenario}] {run.start_mm:5.0f} -> "
               f"{run.stop_true_mm:4.0f} mm  {format_delivery(run.delivery)}  ({run.stop_reason})")


def _echo_session(summary: SessionSummary) -> None:
    click.echo(f"session {summary.session_id}: {len(summary.runs)} runs  "
               f"{format_delivery(summary.delivery)}")
    click.echo(f"  capture {summary.fps:.1f} fps  reconnects {summary.reconnects}  "
               f"left in offline buffer {summary.buffered_left}")
    if summary.buffered_left:
        click.echo(f"  deliver them later with --session-id {summary.session_id}")
    if summary.delivery.without_model:
        click.echo(f"  {summary.delivery.without_model} frames answered without a model (recorded "
                   "all the same): the device has no deployment, or its deployment no model "
                   "yet; see `edgeloop deployments list`")
    if summary.device_switches:
        click.echo("  device model: " + ", ".join(
            f"v{version} from {when}" for version, when in summary.device_switches))


def _open_hardware(kind: str, source: str, bus: int, gpio: bool) -> tuple[Camera, RangeSensor,
                                                                          Signals]:
    # Imported here: the hardware adapters are only needed (and only work) on the car.
    from edgeloop.edge_client.camera.opencv_camera import OpenCVCamera  # noqa: PLC0415
    from edgeloop.edge_client.camera.picamera import PiCamera  # noqa: PLC0415
    from edgeloop.edge_client.sensors.adapters import VL53L0XRangeSensor  # noqa: PLC0415

    camera: Camera = PiCamera() if kind == "picamera" else OpenCVCamera(
        int(source) if source.isdigit() else source)
    signals: Signals = GpioSignals() if gpio else ConsoleSignals()
    return camera, VL53L0XRangeSensor.open(bus), signals


def _drive_hardware(kind: str, source: str, bus: int, gpio: bool, runs: int, gateway: str,
                    device: str, token: str, fps: float, mode: Mode, buffer_path: Path,
                    session_id: str | None, onboard: Onboard, tls: ClientTLS | None,
                    clock: RobotClock) -> None:
    from edgeloop.edge_client.robot import run_robot  # noqa: PLC0415

    camera, sensor, signals = _open_hardware(kind, source, bus, gpio)
    controller = ParkingController(SpeedProfile(), mode, signals=signals)

    async def session() -> None:
        config = with_capability(None, onboard.quantized) if onboard.model is not None \
            else None
        client = StreamClient(gateway, device, token, OfflineBuffer(buffer_path),
                              session_id=session_id, config=config, tls=tls, clock=clock)
        onboard.attach(client)
        await client.start()
        if not await client.wait_connected(client.config.connect_timeout_s):
            click.echo(f"gateway {gateway} not reachable yet; frames wait in {buffer_path}")
        try:
            for number in range(1, runs + 1):
                if number > 1:
                    click.prompt("reposition the car and press Enter", default="",
                                 show_default=False)
                decision, delivery = await run_robot(camera, sensor, client, controller, fps,
                                                     onboard=onboard)
                reason = decision.reason if decision else "no frames"
                click.echo(f"run {number:3d}  {format_delivery(delivery)}  ({reason})")
        finally:
            await client.close()
            await onboard.stop()
            for device_part in (camera, sensor, signals):
                device_part.close()

    asyncio.run(session())


@main.command()
@scenario_options
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("-n", "--frames", type=int, default=24, show_default=True)
@click.option("--png/--jpeg", default=False, help="Also write lossless PNGs for inspection.")
def render(scenario: str, floor_rgb: str | None, max_yaw: float | None, max_mm: float | None,
           change_at: float | None, change_to: str | None, seed: int, out: Path, frames: int,
           png: bool) -> None:
    """Write sample frames of simulated runs and a labels.csv (sensor and true distance)."""
    plan = _plan(scenario, floor_rgb, max_yaw, max_mm, change_at, change_to)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "run", "t_s", "scenario", "yaw_deg", "sensor_mm", "true_mm"])
        for i, capture in enumerate(simulate_captures(plan, frames, seed)):
            name = f"frame_{i:05d}.jpg"
            (out / name).write_bytes(capture.jpeg)
            if png:
                image = cv2.cvtColor(decode_jpeg(capture.jpeg), cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(out / name.replace(".jpg", ".png")), image)
            sensor = "" if capture.sensor_mm is None else f"{capture.sensor_mm:.0f}"
            writer.writerow([name, capture.run, f"{capture.t_s:.2f}", capture.scenario,
                             f"{capture.yaw_deg:.1f}", sensor, f"{capture.true_mm:.1f}"])
    click.echo(f"wrote {frames} frames of {plan.steps[0][1].name} to {out}")


@main.command()
def scenarios() -> None:
    """List the named scenarios."""
    for name in SCENARIOS:
        s = get_scenario(name)
        click.echo(f"{name:14s} floor {s.floor.name:6s} rgb {s.floor.rgb}  "
                   f"distance {s.min_mm:.0f}-{s.max_mm:.0f} mm  yaw up to {s.max_yaw_deg:.0f} deg  "
                   f"stop {s.stop_mm:.0f} mm")


logging.captureWarnings(True)
