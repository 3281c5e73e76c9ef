"""Per device and per arm: the recent traffic the fleet and deployment pages show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgeloop.console.backends import when
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb

ONLINE_WITHIN = timedelta(seconds=30)
"""A device whose last frame is this recent is shown online."""
RATE_WINDOW = timedelta(minutes=5)
"""Frames/min and live MAE are measured over this window."""


@dataclass
class DeviceActivity:
    """What the fleet page shows about one device's recent frames."""

    last_frame: datetime | None = None
    frames_recent: int = 0
    mae_mm: float | None = None

    @property
    def online(self) -> bool:
        return self.last_frame is not None and datetime.now(UTC) - self.last_frame < ONLINE_WITHIN

    @property
    def frames_per_min(self) -> float:
        return self.frames_recent / (RATE_WINDOW.total_seconds() / 60)


def device_activity(devices: Sequence[fpb.DeviceTraffic]) -> dict[str, DeviceActivity]:
    """Per device id: its newest frame, frames and live MAE in the rate window (the features
    service's ``SummarizeTraffic`` over :data:`RATE_WINDOW`)."""
    return {d.device_id: DeviceActivity(when(d.last_frame), d.frames,
                                        d.mae_mm if d.HasField("mae_mm") else None)
            for d in devices}


@dataclass
class ArmTraffic:
    """Traffic and error of one arm's version (answered or shadow) over the rate window."""

    arm: str
    version: str
    answered: int = 0
    shadow: int = 0
    mae_mm: float | None = None


def arm_traffic(arms: Sequence[fpb.ArmTraffic]) -> list[ArmTraffic]:
    """Per (arm, version): frames it answered, frames it shadowed, and its MAE on labels."""
    return [ArmTraffic(a.arm or "-", a.model_version or "-", a.answered, a.shadowed,
                       a.mae_mm if a.HasField("mae_mm") else None) for a in arms]
