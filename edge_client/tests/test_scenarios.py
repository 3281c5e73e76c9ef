"""Scenario registry, YAML scenarios, schedules and the simulated drive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeloop.edge_client.scene.scenarios import (
    SCENARIOS,
    ScenarioError,
    get_scenario,
    load_plan,
    resolve_plan,
)
from edgeloop.edge_client.simulate import simulate_captures


def test_registered_scenarios() -> None:
    assert set(SCENARIOS) == {"beige", "beige-distant", "green", "green-angle", "red"}
    assert get_scenario("beige-distant").max_mm == 350
    assert get_scenario("green-angle").max_yaw_deg == 30
    with pytest.raises(ScenarioError, match="known: beige"):
        get_scenario("purple")


def test_yaml_scenario_with_a_change_mid_drive(tmp_path: Path) -> None:
    path = tmp_path / "night.yaml"
    path.write_text(
        "name: dim-beige\nbase: beige\ndistance_mm: [0, 300]\n"
        "look: {gain: 0.6, cast: [1.0, 1.0, 1.0]}\ncamera: {pitch_deg: 50}\n"
        "floor: {rgb: [200, 150, 90]}\n"
        "changes:\n  - {at_s: 600, scenario: green}\n")
    plan = load_plan(path)
    first = plan.at(0)
    assert first.name == "dim-beige" and first.max_mm == 300 and first.look.gain == 0.6
    assert first.look.cast == (1.0, 1.0, 1.0) and first.camera.pitch_deg == 50
    assert first.floor.rgb == (200, 150, 90)
    assert plan.at(599.9).name == "dim-beige" and plan.at(600).name == "green"
    assert resolve_plan(str(path)) == plan


@pytest.mark.parametrize(("text", "message"), [
    ("colour: red\n", "unknown scenario fields"),
    ("distance_mm: [300, 100]\n", "min < max"),
    ("max_yaw_deg: 45\n", r"\[0, 30\]"),
    ("look: {shine: 2}\n", "look: unknown fields"),
    ("floor: {rgb: [1, 2]}\n", "floor"),
    ("changes: [{at_s: 10}]\n", r"changes\[0\]"),
])
def test_bad_scenario_files_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_plan(path)


def test_runs_reverse_toward_the_wall_and_stop_like_the_thesis() -> None:
    captures = list(simulate_captures("beige", 250, seed=4))
    runs: dict[int, list] = {}
    for c in captures:
        runs.setdefault(c.run, []).append(c)
    complete = list(runs.values())[:-1]
    lengths = [len(r) for r in complete]
    assert 18 <= np.mean(lengths) <= 32, "about 25 frames per run at 4 fps"
    for run in complete:
        true = [c.true_mm for c in run]
        assert all(a >= b for a, b in zip(true, true[1:], strict=False))
        assert true[0] >= 0.8 * 250 - 1 and true[0] <= 250
        assert run[-1].sensor_mm is not None and run[-1].sensor_mm <= 30
        steps = np.diff(true)
        assert steps[0] < steps[-1] <= 0, "it slows down near the wall"
        assert [c.t_s for c in run][1] - run[0].t_s == pytest.approx(0.25)


def test_scenario_plan_changes_at_the_next_run() -> None:
    plan = resolve_plan("beige").then(20.0, get_scenario("red"))
    captures = list(simulate_captures(plan, 120, seed=1))
    names = [c.scenario for c in captures]
    switch = names.index("red")
    assert set(names[:switch]) == {"beige"} and set(names[switch:]) == {"red"}
    assert captures[switch].t_s >= 20.0 and captures[switch].run > captures[switch - 1].run


def test_angled_approach_moves_the_label_away_from_what_the_camera_sees() -> None:
    # A model trained head-on reads the wall at the image centre; in green-angle the
    # label (the sensor) differs from that by sensor_x_mm * tan(yaw). Its mean must be at
    # least 3x the in-world error (~3.5 mm, the sensor's own noise at 100-200 mm).
    scenario = get_scenario("green-angle")
    captures = list(simulate_captures("green-angle", 240, seed=5))
    gap = [abs(scenario.sensor_x_mm * np.tan(np.radians(c.yaw_deg))) for c in captures]
    assert np.mean(gap) >= 3 * 3.5
    assert get_scenario("green").max_yaw_deg == 0
