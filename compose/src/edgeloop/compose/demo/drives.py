"""Driving the simulated robot: fast replays on a history clock, and live runs.

Phases 1-4 replay drives as fast as the gateway answers. Their capture times follow a
*history clock* that starts hours in the past: the drift monitor judges wall-clock
windows of the last minutes, so replayed history never enters them, and the monitor
cannot start retraining sweeps of its own while the demo retrains by hand (as the thesis
did in those phases). Phase 5 drives live, one run per stream session with capture times
from the wall clock, at 4 fps, and the monitor sees every frame as it happens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgeloop.compose.demo import on_device
from edgeloop.compose.demo.services import DemoError
from edgeloop.edge_client.scene.scenarios import ScenarioPlan
from edgeloop.edge_client.simulate import drive_session_async
from edgeloop.edge_client.summary import RunSummary, SessionSummary
from edgeloop.platform.tls import ClientTLS

log = logging.getLogger(__name__)
PAUSE_S = 2.0
"""The simulator's repositioning pause between runs (its clock moves on by this much)."""
HISTORY_SPAN = timedelta(hours=6)
"""How far in the past the history clock starts."""
HISTORY_MARGIN = timedelta(minutes=15)
"""Replayed frames stay at least this far behind the wall clock (beyond every rule window)."""


@dataclass(frozen=True)
class Device:
    """The demo's robot: its id and the token the registry issued."""

    device_id: str
    token: str


@dataclass(frozen=True)
class Drive:
    """A finished drive: its capture-time range and the client's summary."""

    start: datetime
    end: datetime
    summary: SessionSummary

    @property
    def expected_records(self) -> int:
        """Frames the platform should have stored (sent minus refused or dropped)."""
        d = self.summary.delivery
        return max(0, d.frames - d.errors - d.dropped)


class HistoryClock:
    """Capture times for replayed drives, one after the other, well behind the wall clock."""

    def __init__(self, now: datetime | None = None, gap_s: float = 30.0) -> None:
        self.cursor = (now or datetime.now(UTC)) - HISTORY_SPAN
        self.gap = timedelta(seconds=gap_s)

    def take(self, runs: int, fps: float,
             max_frames_per_run: int = 200) -> tuple[datetime, datetime]:
        """Reserve a slot long enough for ``runs`` runs; returns its (start, end)."""
        start = self.cursor
        longest = runs * (max_frames_per_run / fps + PAUSE_S)
        end = start + timedelta(seconds=longest)
        if end > datetime.now(UTC) - HISTORY_MARGIN:
            raise DemoError("the replayed history would reach the drift monitor's windows; "
                            "drive fewer runs")
        return start, end

    def advance(self, used_until: datetime) -> None:
        """Move past the time a replay actually used."""
        self.cursor = max(self.cursor, used_until) + self.gap


async def replay(gateway: str, device: Device, scenario: str | ScenarioPlan, runs: int,
                 seed: int, fps: float, clock: HistoryClock,
                 on_run: Callable[[RunSummary], None] | None = None, *,
                 tls: ClientTLS | None = None) -> Drive:
    """Drive ``runs`` runs as fast as the gateway answers, on the history clock."""
    start, limit = clock.take(runs, fps)
    summary = await drive_session_async(gateway, device.device_id, device.token, scenario, runs,
                                        seed, fps, realtime=False, start_time=start,
                                        prediction_timeout_s=15.0, drain_timeout_s=60.0,
                                        on_run=on_run, tls=tls)
    frames = summary.delivery.frames
    used = start + timedelta(seconds=frames / fps + runs * PAUSE_S + 1.0)
    clock.advance(used)
    log.info("replayed", extra={"scenario": str(scenario), "runs": runs, "frames": frames})
    return Drive(start, min(used, limit), summary)


async def live_run(gateway: str, device: Device, scenario: str, seed: int, fps: float, *,
                   tls: ClientTLS | None = None) -> Drive:
    """One run in real time, capture times from the wall clock (its own stream session)."""
    start = datetime.now(UTC)
    summary = await drive_session_async(gateway, device.device_id, device.token, scenario, 1,
                                        seed, fps, realtime=True, start_time=start,
                                        prediction_timeout_s=5.0, drain_timeout_s=30.0,
                                        tls=tls,
                                        **on_device.session_kwargs(device.device_id))
    frames = summary.delivery.frames
    end = start + timedelta(seconds=frames / fps + PAUSE_S + 1.0)
    return Drive(start, end, summary)
