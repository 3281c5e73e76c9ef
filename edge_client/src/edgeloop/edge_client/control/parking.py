"""The parking controller: speed and stop decision from the model or the sensor.

As in the thesis the distance source is selectable: ``model`` steers by the platform's
prediction, ``sensor`` by the VL53L0X. Whatever the mode, the sensor keeps a safety
stop: a valid reading at or inside the stop distance stops the car, and a missing or
late prediction falls back to the sensor. With no distance at all the car waits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edgeloop.edge_client.control.profile import SpeedProfile
from edgeloop.edge_client.control.signals import Signals


class Mode(enum.StrEnum):
    """Which distance steers the car."""

    MODEL = "model"
    SENSOR = "sensor"


@dataclass(frozen=True)
class Decision:
    """What the car does until the next frame."""

    speed_mm_s: float
    stop: bool
    distance_mm: float | None
    source: str
    reason: str


class ParkingController:
    """Decides speed and stop for every captured frame."""

    def __init__(self, profile: SpeedProfile | None = None, mode: Mode = Mode.SENSOR,
                 max_prediction_age_s: float = 0.5, signals: Signals | None = None) -> None:
        self.profile = profile or SpeedProfile()
        self.mode = Mode(mode)
        self.max_prediction_age_s = max_prediction_age_s
        self.signals = signals

    def decide(self, sensor_mm: float | None, prediction_mm: float | None = None,
               prediction_age_s: float | None = None) -> Decision:
        """The decision for one frame; ``prediction_age_s`` is how old the prediction is."""
        distance, source, why = self._estimate(sensor_mm, prediction_mm, prediction_age_s)
        decision = self._decide(distance, source, why, sensor_mm)
        if self.signals is not None:
            self.signals.proximity(decision.distance_mm)
            if decision.stop:
                self.signals.stopped(decision.reason)
        return decision

    def _estimate(self, sensor_mm: float | None, prediction_mm: float | None,
                  age_s: float | None) -> tuple[float | None, str, str]:
        if self.mode is Mode.SENSOR:
            return sensor_mm, "sensor", "sensor mode"
        if prediction_mm is None:
            return sensor_mm, "sensor", "prediction missing"
        if age_s is None or age_s > self.max_prediction_age_s:
            return sensor_mm, "sensor", "prediction late"
        return prediction_mm, "model", "model mode"

    def _decide(self, distance: float | None, source: str, why: str,
                sensor_mm: float | None) -> Decision:
        stop_mm = self.profile.stop_mm
        if sensor_mm is not None and sensor_mm <= stop_mm:
            return Decision(0.0, True, distance if distance is not None else sensor_mm, "sensor",
                            f"safety stop: sensor {sensor_mm:.0f} mm <= {stop_mm:.0f} mm")
        if distance is None:
            return Decision(0.0, False, None, "none", f"waiting: no distance ({why})")
        if distance <= stop_mm:
            return Decision(0.0, True, distance, source,
                            f"stop: {source} {distance:.0f} mm <= {stop_mm:.0f} mm")
        return Decision(self.profile.speed(distance), False, distance, source, why)
