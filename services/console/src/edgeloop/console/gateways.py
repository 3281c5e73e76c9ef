"""The gateways' spools on the fleet page: the status file each writes, and its samples.

Each gateway process rewrites ``status.json`` in its spool folder every few seconds
(:mod:`edgeloop.platform.gateway_status`). The console reads the folders named in
``EDGELOOP_SPOOL_DIRS`` (`edgeloop up` names every gateway's): an operator sees on the
fleet page when the recording falls behind, before robots' frames go unrecorded.

Whether it is catching up is the next question: each gateway also sends the features service
a sample every few seconds, and the page draws each one's backlog over the last
:data:`TREND_WINDOW` from them (:class:`GatewayTrend`). A gateway whose folder the console
cannot read (another host) still gets a row, from its newest sample (its disk's room too).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.platform.diskspace import is_low
from edgeloop.platform.gateway_status import RECORDING_STATE_WORDS, GatewayStatus, read_status

_PILLS = {"recording": "ok", "features failing": "pending", "stale": "pending",
          "silent": "pending", "not recording": "failed", "disk full": "failed",
          "disk low": "pending"}
TREND_WINDOW = timedelta(minutes=30)
TREND_POINTS = 120
"""Samples a trend plots at most (features thins them): about a point per pixel."""
SPARK_WIDTH, SPARK_HEIGHT = 120, 24
SILENT_AFTER_S = 60.0
"""A gateway known only from its samples is silent when its newest is older than this (or
than three of its sampling intervals, the median gap between its samples, if longer)."""


@dataclass(frozen=True)
class GatewaySpool:
    """One spool folder and what its gateway last wrote there (None: nothing yet)."""

    folder: str
    status: GatewayStatus | None
    read_at: float

    @property
    def state(self) -> str:
        """One word for the row's pill: the worst of what the status says; ``disk low`` when
        it records but its spool's filesystem is nearly full."""
        if self.status is None:
            return "no status"
        state = self.status.recording_state(self.read_at)
        return "disk low" if state == "recording" and self.status.disk_low else state

    @property
    def pill(self) -> str:
        """The stylesheet's class for the state: green, amber (behind) or red (losing records)."""
        return _PILLS.get(self.state, "")


async def read_gateway_spools(folders: list[str]) -> list[GatewaySpool]:
    """The status of every configured spool folder, read off the event loop."""
    def read_all() -> list[GatewaySpool]:
        now = time.time()
        return [GatewaySpool(folder, read_status(Path(folder)), now) for folder in folders]
    return await asyncio.to_thread(read_all) if folders else []


@dataclass(frozen=True)
class GatewayTrend:
    """A gateway's samples over the trend window, oldest first (at least one)."""

    gateway_id: str
    samples: tuple[fpb.GatewaySample, ...]
    read_at: float

    @property
    def last(self) -> fpb.GatewaySample:
        return self.samples[-1]

    @property
    def age_s(self) -> float:
        """Seconds since its newest sample."""
        return self.read_at - _seconds(self.last)

    @property
    def state(self) -> str:
        """Its newest sample's recording state (``disk low`` as for a status file), or
        ``silent`` when no sample came for long."""
        gaps = [_seconds(b) - _seconds(a) for a, b in itertools.pairwise(self.samples)]
        interval = statistics.median(gaps) if gaps else 0.0  # an outage's gap is no interval
        if self.age_s > max(SILENT_AFTER_S, 3 * interval):
            return "silent"
        state = RECORDING_STATE_WORDS.get(self.last.recording, "unknown")
        return "disk low" if state == "recording" and self.disk_low else state

    @property
    def disk_low(self) -> bool:
        """Its newest sample has less than a tenth of the spool's filesystem free (False when
        the gateway does not measure it)."""
        return is_low(self.last.disk_free_bytes, self.last.disk_total_bytes)  # 0 of 0: not low

    @property
    def pill(self) -> str:
        return _PILLS.get(self.state, "")

    def spark_points(self) -> str:
        """The backlog's share of the spool over the window as SVG polyline points: time left
        to right (the window ends now), 0 % at the bottom, 100 % at the top."""
        start = self.read_at - TREND_WINDOW.total_seconds()
        points = []
        for sample in self.samples:
            x = (_seconds(sample) - start) / TREND_WINDOW.total_seconds() * SPARK_WIDTH
            fill = sample.backlog_bytes / sample.max_bytes if sample.max_bytes else 0.0
            y = (1 - min(max(fill, 0.0), 1.0)) * SPARK_HEIGHT
            points.append(f"{min(max(x, 0.0), SPARK_WIDTH):.1f},{y:.1f}")
        return " ".join(points)


def _seconds(sample: fpb.GatewaySample) -> float:
    return sample.sampled_at.ToNanoseconds() / 1e9


def gateway_trends(samples: Iterable[fpb.GatewaySample], read_at: float | None = None,
                   ) -> dict[str, GatewayTrend]:
    """Per gateway id, its trend from a ListGatewaySamples reply (by gateway, oldest first)."""
    now = time.time() if read_at is None else read_at
    grouped: dict[str, list[fpb.GatewaySample]] = {}
    for sample in samples:
        grouped.setdefault(sample.gateway_id, []).append(sample)
    return {gateway: GatewayTrend(gateway, tuple(found), now)
            for gateway, found in grouped.items()}


def sampled_only(spools: list[GatewaySpool], trends: dict[str, GatewayTrend],
                 ) -> list[GatewayTrend]:
    """The gateways known from samples whose status file the console does not read."""
    local = {spool.status.gateway_id for spool in spools if spool.status is not None}
    return [trend for gateway, trend in sorted(trends.items()) if gateway not in local]
