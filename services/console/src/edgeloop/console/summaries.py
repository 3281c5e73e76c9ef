"""Per device and per arm: the recent traffic the fleet and deployment pages show."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgeloop.console.backends import when
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.platform.gateway_status import GatewayStatus, fleet_contacts, is_clock_off

ONLINE_WITHIN = timedelta(seconds=30)
"""A device whose last frame is this recent is shown online."""
RATE_WINDOW = timedelta(minutes=5)
"""Frames/min and live MAE are measured over this window."""
DEVICE = observation_pb2.PredictionSource.PREDICTION_SOURCE_DEVICE


@dataclass
class DeviceActivity:
    """What the fleet page shows about one device: its recent recorded frames, and its contact
    with the gateways (which see it also while its frames cannot be recorded)."""

    last_frame: datetime | None = None
    """Its newest recorded frame."""
    frames_recent: int = 0
    mae_mm: float | None = None
    streams: int = 0
    """Streams it holds open to gateways that are running now."""
    gateway_contact: datetime | None = None
    """Its last contact with any gateway (a stream opened or closed, a frame answered)."""
    gateway_fps: float = 0.0
    """Frames a second it sends to running gateways now, recorded or not."""
    runs: str = ""
    """What answered its newest recorded frame: ``v4 on the device (quantized twin)``, ``v4
    on the device``, ``v4 on the server``; empty when that frame had no answer."""
    clock_offset_s: float | None = None
    """How far its clock is ahead of its gateway's (negative: behind; None: not measured)."""

    @property
    def clock_off(self) -> bool:
        """Its clock is off by more than ``gateway_status.CLOCK_OFF_S``: its recorded frames'
        times (and so its rates here, its last frame) are off by as much."""
        return is_clock_off(self.clock_offset_s)

    @property
    def last_contact(self) -> datetime | None:
        """The newer of its last recorded frame and its last contact with a gateway. The
        frame's time is its capture time, on the robot's clock: put on the gateway's clock
        when a gateway measured the robot's (an hour-fast robot would look online for an hour
        after it stopped, its last frame "in the future")."""
        frame = self.last_frame
        if frame is not None and self.clock_offset_s is not None:
            frame -= timedelta(seconds=self.clock_offset_s)
        known = [t for t in (frame, self.gateway_contact) if t is not None]
        return max(known) if known else None

    @property
    def online(self) -> bool:
        return self.streams > 0 or (self.last_contact is not None
                                    and datetime.now(UTC) - self.last_contact < ONLINE_WITHIN)

    @property
    def frames_per_min(self) -> float:
        return self.frames_recent / (RATE_WINDOW.total_seconds() / 60)


def device_activity(devices: Sequence[fpb.DeviceTraffic],
                    gateways: Sequence[GatewayStatus] = ()) -> dict[str, DeviceActivity]:
    """Per device id: its newest frame, frames and live MAE in the rate window (the features
    service's ``SummarizeTraffic`` over :data:`RATE_WINDOW`), and its contact as the
    gateways' status files last said it."""
    activity = {d.device_id: DeviceActivity(when(d.last_frame), d.frames,
                                            d.mae_mm if d.HasField("mae_mm") else None,
                                            runs=_runs(d))
                for d in devices}
    for device_id, contact in fleet_contacts(gateways).items():
        entry = activity.setdefault(device_id, DeviceActivity())
        entry.streams, entry.gateway_fps = contact.streams, contact.fps
        entry.gateway_contact = datetime.fromtimestamp(contact.last_contact, UTC)
        entry.clock_offset_s = contact.clock_offset_s
    return activity


def _runs(device: fpb.DeviceTraffic) -> str:
    """Where and with which file the device's newest recorded frame was answered."""
    if not device.model_version:
        return ""
    if device.source != DEVICE:
        return f"v{device.model_version} on the server"
    twin = " (quantized twin)" if device.quantized else ""
    return f"v{device.model_version} on the device{twin}"


def robots_by_runs(devices: Sequence[fpb.DeviceTraffic]) -> list[tuple[str, int]]:
    """How many robots' newest recorded frame each version and file answered (a rollout's
    progress: ``[("v5 on the device (quantized twin)", 7), ("v4 on the device", 2)]``), the
    most common first; frames without an answer are left out."""
    counts = Counter(runs for runs in map(_runs, devices) if runs)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


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
