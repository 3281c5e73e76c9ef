"""Numbers the pages show that no service keeps: per device and per arm, from observations."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgeloop.console.backends import when
from edgeloop.contracts.features.v1 import observation_pb2

ONLINE_WITHIN = timedelta(seconds=30)
"""A device whose last frame is this recent is shown online."""
RATE_WINDOW = timedelta(minutes=5)
"""Frames/min and live MAE are measured over this window."""


@dataclass
class DeviceActivity:
    """What the fleet page shows about one device's recent frames."""

    last_frame: datetime | None = None
    frames_recent: int = 0
    abs_errors: float = 0.0
    labelled: int = 0

    @property
    def online(self) -> bool:
        return self.last_frame is not None and datetime.now(UTC) - self.last_frame < ONLINE_WITHIN

    @property
    def frames_per_min(self) -> float:
        return self.frames_recent / (RATE_WINDOW.total_seconds() / 60)

    @property
    def mae_mm(self) -> float | None:
        return self.abs_errors / self.labelled if self.labelled else None


def device_activity(observations: list[observation_pb2.Observation]) -> dict[str, DeviceActivity]:
    """Per device id: last frame, frames in the rate window, live MAE."""
    since = datetime.now(UTC) - RATE_WINDOW
    activity: dict[str, DeviceActivity] = defaultdict(DeviceActivity)
    for obs in observations:
        moment = when(obs.time)
        entry = activity[obs.device_id]
        if moment is not None and (entry.last_frame is None or moment > entry.last_frame):
            entry.last_frame = moment
        if moment is not None and moment >= since:
            entry.frames_recent += 1
            if obs.HasField("error_mm"):
                entry.abs_errors += abs(obs.error_mm)
                entry.labelled += 1
    return dict(activity)


@dataclass
class ArmTraffic:
    """Traffic and error of one arm (answered or shadow) over the recent window."""

    arm: str
    version: str
    answered: int = 0
    shadow: int = 0
    abs_errors: float = 0.0
    labelled: int = 0

    @property
    def mae_mm(self) -> float | None:
        return self.abs_errors / self.labelled if self.labelled else None


def arm_traffic(observations: list[observation_pb2.Observation]) -> list[ArmTraffic]:
    """Per (arm, version): frames it answered, frames it shadowed, and its MAE on labels."""
    arms: dict[tuple[str, str], ArmTraffic] = {}

    def entry(arm: str, version: str) -> ArmTraffic:
        key = (arm or "-", version or "-")
        return arms.setdefault(key, ArmTraffic(*key))

    for obs in observations:
        answered = entry(obs.arm, obs.model_version)
        answered.answered += 1
        if obs.HasField("error_mm"):
            answered.abs_errors += abs(obs.error_mm)
            answered.labelled += 1
        for shadow in obs.shadow_predictions:
            row = entry(shadow.arm, shadow.model_version)
            row.shadow += 1
            if obs.HasField("sensor_mm"):
                row.abs_errors += abs(shadow.prediction_mm - obs.sensor_mm)
                row.labelled += 1
    return sorted(arms.values(), key=lambda a: (a.arm, a.version))
