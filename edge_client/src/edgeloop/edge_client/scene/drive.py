"""The drive simulation: runs of a car reversing toward the wall, captured at a fixed rate.

Each run starts at a random distance near the top of the scenario's range and a random
wall angle within it, then reverses with the speed the controller asks for; frames are
captured every ``1/fps`` seconds of simulated time and the run ends when the controller
stops the car. The simulated clock runs on between runs (``pause_s`` to reposition), and
the scenario plan is consulted at the start of every run, so "the floor changes after
600 s" takes effect with the first run that starts after 600 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from edgeloop.edge_client.scene.floor import TEXTURE_MM
from edgeloop.edge_client.scene.render import SceneRenderer, SceneState
from edgeloop.edge_client.scene.scenarios import Scenario, ScenarioPlan
from edgeloop.edge_client.sensors.tof_model import TofModel

START_FRACTION = 0.8
"""Runs start in the top fifth of the scenario's distance range."""


@dataclass(frozen=True)
class Capture:
    """One simulated capture: image, sensor reading and the truth behind them."""

    run: int
    index: int
    t_s: float
    true_mm: float
    sensor_mm: float | None
    yaw_deg: float
    scenario: str
    jpeg: bytes


@dataclass
class _Run:
    number: int
    scenario: Scenario
    distance_mm: float
    yaw_deg: float
    offset_mm: float
    start_mm: float
    frames: int = 0


class DriveSimulator:
    """Simulated car, wall and sensor; deterministic for a seed and a sequence of speeds."""

    def __init__(self, plan: ScenarioPlan, seed: int = 0, fps: float = 4.0,
                 tof: TofModel | None = None, pause_s: float = 2.0) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.plan = plan
        self.fps = fps
        self.pause_s = pause_s
        self.tof = tof or TofModel()
        self.t_s = 0.0
        self.seed = seed
        drive_seq, sensor_seq = np.random.SeedSequence(seed).spawn(2)
        self._rng = np.random.default_rng(drive_seq)
        self._sensor_rng = np.random.default_rng(sensor_seq)
        self._renderers: dict[object, SceneRenderer] = {}
        self._run: _Run | None = None
        self._runs = 0

    @property
    def scenario(self) -> Scenario:
        """The scenario of the current run (or the one in force now, between runs)."""
        return self._run.scenario if self._run else self.plan.at(self.t_s)

    def start_run(self) -> int:
        """Place the car for a new run; returns the run number (1-based)."""
        scenario = self.plan.at(self.t_s)
        low = max(scenario.min_mm, scenario.stop_mm)
        start = self._rng.uniform(low + START_FRACTION * (scenario.max_mm - low), scenario.max_mm)
        yaw = self._rng.uniform(-scenario.max_yaw_deg, scenario.max_yaw_deg)
        self._runs += 1
        self._run = _Run(self._runs, scenario, float(start), float(yaw),
                         float(self._rng.uniform(0, TEXTURE_MM)), float(start))
        return self._runs

    def capture(self) -> Capture:
        """Render the current view and read the sensor."""
        run = self._require_run()
        state = SceneState(run.distance_mm, run.yaw_deg,
                           run.offset_mm + run.start_mm - run.distance_mm,
                           run.scenario.sensor_x_mm)
        renderer = self._renderer(run.scenario)
        jpeg = renderer.render_jpeg(state, run.scenario.floor, run.scenario.look)
        sensor = self.tof.read(run.distance_mm, run.yaw_deg, self._sensor_rng)
        capture = Capture(run.number, run.frames, self.t_s, run.distance_mm, sensor,
                          run.yaw_deg, run.scenario.name, jpeg)
        run.frames += 1
        return capture

    def advance(self, speed_mm_s: float) -> None:
        """Reverse at ``speed_mm_s`` until the next capture (never through the wall)."""
        run = self._require_run()
        run.distance_mm = max(0.0, run.distance_mm - max(0.0, speed_mm_s) / self.fps)
        self.t_s += 1.0 / self.fps

    def end_run(self) -> None:
        """Finish the run; the clock moves on by the repositioning pause."""
        self._run = None
        self.t_s += self.pause_s

    def _require_run(self) -> _Run:
        if self._run is None:
            raise RuntimeError("no run in progress: call start_run() first")
        return self._run

    def _renderer(self, scenario: Scenario) -> SceneRenderer:
        renderer = self._renderers.get(scenario.camera)
        if renderer is None:
            renderer = SceneRenderer(scenario.camera, seed=self.seed)
            self._renderers[scenario.camera] = renderer
        return renderer
