"""Drive simulated robots from other code: labelled frames without a gateway, and sessions.

The public surface for tests, benchmarks and ``edgeloop demo``:

- :func:`render_dataset` yields labelled frames of a scenario with no network at all;
- :func:`drive_session` / :func:`drive_session_async` drive simulated runs against a
  gateway through the real stream client and return per-run and session summaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from edgeloop.edge_client.control.parking import Mode, ParkingController
from edgeloop.edge_client.control.profile import SpeedProfile
from edgeloop.edge_client.scene.drive import Capture, DriveSimulator
from edgeloop.edge_client.scene.scenarios import Scenario, ScenarioPlan, resolve_plan

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
