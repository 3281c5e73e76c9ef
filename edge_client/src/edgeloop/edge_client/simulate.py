"""Drive simulated robots from other code: labelled frames without a gateway, and sessions.

The public surface for tests, benchmarks and ``edgeloop demo``:

- :func:`render_dataset` yields labelled frames of a scenario with no network at all;
- :func:`drive_session` / :func:`drive_session_async` drive simulated runs against a
  gateway through the real stream client and return per-run and session summaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from edgeloop.edge_client.control.parking import Decision, Mode, ParkingController
from edgeloop.edge_client.control.profile import SpeedProfile
from edgeloop.edge_client.inference.litert import DeviceAnswer
from edgeloop.edge_client.inference.onboard import Inference, Onboard, as_proto, with_capability
from edgeloop.edge_client.scene.drive import Capture, DriveSimulator
from edgeloop.edge_client.scene.scenarios import Scenario, ScenarioPlan, resolve_plan
from edgeloop.edge_client.stream.buffer import OfflineBuffer
from edgeloop.edge_client.stream.client import StreamClient, StreamConfig, with_simulated_clock
from edgeloop.edge_client.stream.clock import RobotClock
from edgeloop.edge_client.summary import RunSummary, SessionSummary, summarise
from edgeloop.platform import log_context
from edgeloop.platform.tls import ClientTLS

MAX_FRAMES_PER_RUN = 200
"""A run that has not stopped after this many frames is ended (a controller that never stops)."""

ScenarioLike = str | Path | Scenario | ScenarioPlan


class SampleFrame(NamedTuple):
    """A labelled frame: JPEG bytes, the sensor's reading (None: no reading), the truth."""

    jpeg: bytes
    sensor_mm: float | None
    true_mm: float


def render_dataset(scenario: ScenarioLike, n: int, seed: int = 0, fps: float = 4.0,
                   profile: SpeedProfile | None = None) -> Iterator[SampleFrame]:
    """``n`` frames from simulated runs in ``scenario`` (name, YAML path, Scenario or plan).

    The car is steered by the simulated sensor, so the distances follow the same
    distribution as a real drive session in that scenario. Deterministic for a seed.
    """
    for capture in simulate_captures(scenario, n, seed, fps, profile):
        yield SampleFrame(capture.jpeg, capture.sensor_mm, capture.true_mm)


def simulate_captures(scenario: ScenarioLike, n: int, seed: int = 0, fps: float = 4.0,
                      profile: SpeedProfile | None = None) -> Iterator[Capture]:
    """Like :func:`render_dataset` but yields full :class:`Capture` records (run, time, yaw)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    plan = resolve_plan(scenario)
    sim = DriveSimulator(plan, seed=seed, fps=fps)
    produced = 0
    while produced < n:
        sim.start_run()
        controller = ParkingController(_profile_for(sim, profile), Mode.SENSOR)
        for _ in range(MAX_FRAMES_PER_RUN):
            capture = sim.capture()
            yield capture
            produced += 1
            decision = controller.decide(capture.sensor_mm)
            if produced >= n or decision.stop:
                break
            sim.advance(decision.speed_mm_s)
        sim.end_run()


def _profile_for(sim: DriveSimulator, profile: SpeedProfile | None) -> SpeedProfile:
    # The scenario's stop distance wins unless the caller gave a full profile.
    if profile is not None:
        return profile
    return SpeedProfile(stop_mm=sim.scenario.stop_mm)


async def drive_session_async(gateway_addr: str, device_id: str, token: str,
                              scenario: ScenarioLike = "beige", runs: int = 1, seed: int = 0,
                              fps: float = 4.0, realtime: bool = False, *,
                              mode: Mode = Mode.SENSOR, buffer_path: Path | None = None,
                              session_id: str | None = None, start_time: datetime | None = None,
                              prediction_timeout_s: float = 1.0, drain_timeout_s: float = 30.0,
                              config: StreamConfig | None = None, tls: ClientTLS | None = None,
                              on_run: Callable[[RunSummary], None] | None = None,
                              inference: Inference = Inference.SERVER,
                              model_dir: Path | None = None,
                              onboard: Onboard | None = None,
                              keep_driving: Callable[[], bool] | None = None,
                              clock_offset_s: float = 0.0,
                              clock_from_gateway: bool = False) -> SessionSummary:
    """Drive ``runs`` simulated runs against the gateway at ``gateway_addr``; summarise them.

    ``realtime`` paces captures at ``fps`` on the wall clock (``captured_at`` is the wall
    clock, and the 2 s repositioning pause between runs is waited out); otherwise frames
    go out as fast as the gateway answers and ``captured_at`` follows the simulated clock
    from ``start_time`` (default now), so a 20-minute session can be replayed in seconds.
    ``mode`` selects what steers the car (the platform's prediction or the sensor).
    The offline buffer lives at ``buffer_path`` (default: a temporary file).
    ``inference`` chooses where frames are predicted (server, device, auto); device and
    auto keep their LiteRT model in ``model_dir`` (default: a temporary folder), or use
    the given ``onboard`` (whose ``model.switches`` then tell when each version took over).
    After ``runs`` runs, more runs follow while ``keep_driving()`` is true.
    With ``tls`` the stream is TLS (and presents the device certificate it holds, for
    mutual TLS). ``clock_offset_s`` sets a real-time robot's clock that far off the wall
    clock (negative: behind), as a robot without NTP would be; with ``clock_from_gateway``
    it stamps its frames on the gateway's clock instead (:mod:`edgeloop.edge_client.stream.clock`).
    """
    with contextlib.ExitStack() as stack:
        if buffer_path is None:
            buffer_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "buffer.db"
        buffer = OfflineBuffer(buffer_path)
        stack.callback(buffer.close)
        if onboard is None:
            if inference is not Inference.SERVER and model_dir is None:
                model_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "models"
            onboard = Onboard.create(inference, model_dir)
        if onboard.model is not None:
            config = with_capability(config, onboard.quantized)
        if not realtime:  # history replayed faster than it happened: say the clock is ours
            config = with_simulated_clock(config)
        skew = timedelta(seconds=clock_offset_s)
        clock = RobotClock(read=lambda: datetime.now(UTC) + skew,
                           from_gateway=clock_from_gateway)
        client = StreamClient(gateway_addr, device_id, token, buffer, session_id=session_id,
                              config=config, tls=tls, clock=clock)
        onboard.attach(client)
        session = _Session(client, resolve_plan(scenario), seed, fps, realtime, mode,
                           start_time or datetime.now(UTC), prediction_timeout_s, onboard)
        await client.start()
        # Give the first stream its chance, so the first frames go out live, not late;
        # without a gateway the session still drives and the frames wait on disk.
        await client.wait_connected(client.config.connect_timeout_s)
        try:
            done = 0
            while done < runs or (keep_driving is not None and keep_driving()):
                summary = await session.run()
                done += 1
                if on_run is not None:
                    on_run(summary)
        finally:
            try:
                await client.close(drain_timeout_s)
            finally:
                await onboard.stop()
        return session.summary()


def drive_session(gateway_addr: str, device_id: str, token: str,
                  scenario: ScenarioLike = "beige", runs: int = 1, seed: int = 0,
                  fps: float = 4.0, realtime: bool = False, **kwargs: Any) -> SessionSummary:
    """Blocking :func:`drive_session_async` (its own event loop)."""
    return asyncio.run(drive_session_async(gateway_addr, device_id, token, scenario, runs, seed,
                                           fps, realtime, **kwargs))


class _Session:
    """Runs of one session: simulator, controller and stream client together."""

    def __init__(self, client: StreamClient, plan: ScenarioPlan, seed: int, fps: float,
                 realtime: bool, mode: Mode, start_time: datetime,
                 prediction_timeout_s: float, onboard: Onboard | None = None) -> None:
        self.client = client
        self.onboard = onboard or Onboard(Inference.SERVER)
        self.sim = DriveSimulator(plan, seed=seed, fps=fps)
        self.realtime = realtime
        self.mode = Mode(mode)
        self.start_time = start_time
        self.prediction_timeout_s = prediction_timeout_s
        self.sensors: dict[int, float | None] = {}
        self.runs: list[tuple[list[int], RunSummary]] = []

    async def run(self) -> RunSummary:
        """One run from its start to the controller's stop."""
        sim = self.sim
        number = sim.start_run()
        controller = ParkingController(SpeedProfile(stop_mm=sim.scenario.stop_mm), self.mode)
        seqs: list[int] = []
        start_mm, reason = None, "frame limit"
        tick = time.monotonic()
        with log_context(session=self.client.session_id, run=number):
            for _ in range(MAX_FRAMES_PER_RUN):
                capture = sim.capture()
                start_mm = capture.true_mm if start_mm is None else start_mm
                answer = await self.onboard.predict(capture.jpeg)
                seq = self.client.send(capture.jpeg, capture.sensor_mm,
                                       self._captured_at(capture.t_s),
                                       device_prediction=as_proto(answer))
                seqs.append(seq)
                self.sensors[seq] = capture.sensor_mm
                decision = await self._decide(controller, seq, capture.sensor_mm, answer)
                if decision.stop:
                    reason = decision.reason
                    break
                sim.advance(decision.speed_mm_s)
                tick = await self._pace(tick)
            stop_true = capture.true_mm
            sim.end_run()
            results = await self.client.results_for(seqs, self.prediction_timeout_s * 2)
            if self.realtime:
                await asyncio.sleep(sim.pause_s)  # repositioning the car takes real time
        summary = RunSummary(number, capture.scenario, float(start_mm or 0.0), stop_true, reason,
                             summarise(seqs, self.sensors, results))
        self.runs.append((seqs, summary))
        return summary

    async def _decide(self, controller: ParkingController, seq: int,
                      sensor_mm: float | None, answer: DeviceAnswer | None = None) -> Decision:
        if self.mode is Mode.SENSOR or self.onboard.on_device:
            # Yield so the stream client can write and read while we render.
            await asyncio.sleep(0)
            if self.mode is Mode.SENSOR:
                return controller.decide(sensor_mm)
            # On the device: steer by the robot's own answer, gateway or not (no
            # answer yet without a model: the sensor steers).
            return controller.decide(sensor_mm, answer.distance_mm if answer else None,
                                     answer.inference_ms / 1000 if answer else None)
        sent = time.monotonic()
        result = await self.client.result(seq, self.prediction_timeout_s)
        age = time.monotonic() - sent
        prediction = result.distance_mm if result is not None else None
        return controller.decide(sensor_mm, prediction, age)

    def _captured_at(self, t_s: float) -> datetime:
        # Real time: the robot's clock, as a camera would stamp it (the gateway's when asked).
        # Replay: the simulated clock from start_time, so history can be written faster
        # than it happened.
        if self.realtime:
            return self.client.clock.now()
        return self.start_time + timedelta(seconds=t_s)

    async def _pace(self, tick: float) -> float:
        if not self.realtime:
            return tick
        # A capture that ran late moves the schedule instead of bursting to catch up,
        # as a camera at a fixed frame rate would.
        tick = max(tick + 1.0 / self.sim.fps, time.monotonic())
        await asyncio.sleep(tick - time.monotonic())
        return tick

    def summary(self) -> SessionSummary:
        """The session so far, recomputed from all results (late answers included)."""
        results = self.client.results
        runs = [dataclasses.replace(s, delivery=summarise(seqs, self.sensors, results))
                for seqs, s in self.runs]
        all_seqs = [seq for seqs, _ in self.runs for seq in seqs]
        stats = self.client.stats
        switches = self.onboard.model.switches if self.onboard.model is not None else []
        return SessionSummary(self.client.session_id, runs,
                              summarise(all_seqs, self.sensors, results), stats.fps(),
                              stats.reconnects, self.client.buffer.count(self.client.session_id),
                              [(s.model_version, datetime.fromtimestamp(s.at_wall, UTC).isoformat(
                                  timespec="milliseconds")) for s in switches])
