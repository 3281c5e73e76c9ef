"""Named scenarios, custom ones from flags or YAML, and schedules that change mid-drive.

A :class:`Scenario` is one simulated world (floor, distances, wall angles, light, camera
mount). A :class:`ScenarioPlan` is a sequence of scenarios in time, e.g. "beige, then
green after 600 s" for the floor that changes after ten minutes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from edgeloop.edge_client.scene.camera import CameraModel
from edgeloop.edge_client.scene.floor import FloorSpec, floor_preset
from edgeloop.edge_client.scene.render import Look

SENSOR_X_MM = 80.0
"""The VL53L0X sits beside the camera, 80 mm off the car's centre line (the camera needs
the middle of the bumper). Head-on this does not matter; at a 30 degree wall angle the
sensor's reading and the wall the camera sees in the image centre differ by 46 mm."""


class ScenarioError(ValueError):
    """A scenario name, flag or YAML file is invalid; the message names the field."""


@dataclass(frozen=True)
class Scenario:
    """One simulated world and the range of drives in it."""

    name: str
    floor: FloorSpec
    min_mm: float = 0.0
    max_mm: float = 250.0
    max_yaw_deg: float = 0.0
    stop_mm: float = 30.0
    sensor_x_mm: float = SENSOR_X_MM
    """The range sensor's place on the bumper, mm right of the camera's centre line."""
    look: Look = field(default_factory=Look)
    camera: CameraModel = field(default_factory=CameraModel)

    def __post_init__(self) -> None:
        if not 0 <= self.min_mm < self.max_mm:
            raise ScenarioError(f"scenario {self.name}: distance_mm needs 0 <= min < max, "
                                f"got [{self.min_mm}, {self.max_mm}]")
        if not 0 <= self.max_yaw_deg <= 30:
            raise ScenarioError(f"scenario {self.name}: max_yaw_deg must be in [0, 30], "
                                f"got {self.max_yaw_deg}")
        if not self.min_mm <= self.stop_mm < self.max_mm:
            raise ScenarioError(f"scenario {self.name}: stop_mm must be inside distance_mm")
        if not -150 <= self.sensor_x_mm <= 150:
            raise ScenarioError(f"scenario {self.name}: sensor_x_mm must be in [-150, 150] "
                                f"(on the bumper), got {self.sensor_x_mm}")


SCENARIOS: dict[str, Scenario] = {
    "beige": Scenario("beige", floor_preset("beige"), 0, 250),
    "beige-distant": Scenario("beige-distant", floor_preset("beige"), 0, 350),
    "green": Scenario("green", floor_preset("green"), 0, 250),
    "green-angle": Scenario("green-angle", floor_preset("green"), 0, 250, max_yaw_deg=30),
    "red": Scenario("red", floor_preset("red"), 0, 250),
}


def get_scenario(name: str) -> Scenario:
    """The registered scenario ``name``; ``ScenarioError`` lists the known names otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)} "
                            "(or a path to a YAML file)") from None


@dataclass(frozen=True)
class ScenarioPlan:
    """Scenarios in time: ``steps[i] = (at_s, scenario)``, the first at 0 s."""

    steps: tuple[tuple[float, Scenario], ...]

    def __post_init__(self) -> None:
        times = [t for t, _ in self.steps]
        if not times or times[0] != 0 or times != sorted(times):
            raise ScenarioError("changes: times must start at 0 s and increase")

    @classmethod
    def single(cls, scenario: Scenario) -> ScenarioPlan:
        """A plan with one scenario for the whole session."""
        return cls(((0.0, scenario),))

    def at(self, t_s: float) -> Scenario:
        """The scenario in force at session time ``t_s``."""
        current = self.steps[0][1]
        for start, scenario in self.steps:
            if start <= t_s:
                current = scenario
        return current

    def then(self, at_s: float, scenario: Scenario) -> ScenarioPlan:
        """This plan with a change to ``scenario`` at ``at_s`` seconds."""
        return ScenarioPlan(tuple(sorted((*self.steps, (float(at_s), scenario)),
                                         key=lambda s: s[0])))


def resolve_plan(spec: str | Path | Scenario | ScenarioPlan) -> ScenarioPlan:
    """A plan from a scenario name, a YAML path, a :class:`Scenario` or a plan."""
    if isinstance(spec, ScenarioPlan):
        return spec
    if isinstance(spec, Scenario):
        return ScenarioPlan.single(spec)
    text = str(spec)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return load_plan(Path(text))
    return ScenarioPlan.single(get_scenario(text))


def load_plan(path: Path) -> ScenarioPlan:
    """Read a scenario (and its optional ``changes``) from a YAML file."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: a scenario file is a mapping of fields")
    plan = ScenarioPlan.single(scenario_from_mapping(data, default_name=path.stem))
    for i, change in enumerate(data.get("changes") or []):
        if not isinstance(change, Mapping) or "at_s" not in change or "scenario" not in change:
            raise ScenarioError(f"{path}: changes[{i}] needs at_s and scenario")
        target = change["scenario"]
        scenario = (scenario_from_mapping(target, default_name=f"change-{i}")
                    if isinstance(target, Mapping) else get_scenario(str(target)))
        plan = plan.then(float(change["at_s"]), scenario)
    return plan


_FIELDS = {"name", "base", "floor", "distance_mm", "max_yaw_deg", "stop_mm", "sensor_x_mm", "look",
           "camera", "changes"}


def scenario_from_mapping(data: Mapping[str, Any], default_name: str = "custom") -> Scenario:
    """A scenario from a mapping (YAML): ``base`` gives the defaults, other fields override."""
    unknown = set(data) - _FIELDS
    if unknown:
        raise ScenarioError(f"unknown scenario fields {sorted(unknown)}; known: {sorted(_FIELDS)}")
    base = get_scenario(str(data.get("base", "beige")))
    changes: dict[str, Any] = {"name": str(data.get("name", default_name))}
    if "floor" in data:
        changes["floor"] = _floor(data["floor"])
    if "distance_mm" in data:
        changes["min_mm"], changes["max_mm"] = _pair(data["distance_mm"], "distance_mm")
    for key in ("max_yaw_deg", "stop_mm", "sensor_x_mm"):
        if key in data:
            changes[key] = _number(data[key], key)
    if "look" in data:
        changes["look"] = _replace(base.look, data["look"], "look")
    if "camera" in data:
        changes["camera"] = _replace(base.camera, data["camera"], "camera")
    return dataclasses.replace(base, **changes)


def _floor(value: Any) -> FloorSpec:
    if isinstance(value, str):
        try:
            return floor_preset(value)
        except ValueError as exc:
            raise ScenarioError(f"floor: {exc}") from None
    if not isinstance(value, Mapping) or "rgb" not in value:
        raise ScenarioError("floor: a preset name or a mapping with rgb: [r, g, b]")
    try:
        rgb = tuple(int(c) for c in value["rgb"])
        return FloorSpec(rgb, float(value.get("blotch", 0.08)), float(value.get("grain", 0.05)),
                         str(value.get("name", "custom")))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"floor: {exc}") from None


def _pair(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ScenarioError(f"{name}: expected [min, max]")
    return _number(value[0], name), _number(value[1], name)


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ScenarioError(f"{name}: expected a number, got {value!r}") from None


def _replace(obj: Any, values: Any, name: str) -> Any:
    if not isinstance(values, Mapping):
        raise ScenarioError(f"{name}: expected a mapping")
    known = {f.name for f in dataclasses.fields(obj)}
    unknown = set(values) - known
    if unknown:
        raise ScenarioError(f"{name}: unknown fields {sorted(unknown)}; known: {sorted(known)}")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return dataclasses.replace(obj, **converted)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{name}: {exc}") from None
