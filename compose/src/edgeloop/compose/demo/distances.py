"""Errors by distance: a worse model told apart from a world whose frames are farther away.

A label shift widens the range of distances the robot meets, and the camera resolves a far
wall more coarsely than a near one (the wall's edge moves fewer pixels per millimetre the
farther it is), so every model errs more there. A phase's MAE then mixes the model's quality
with the range it is asked about. Two readings separate them: the error on the frames inside
the pre-drift distance range, and the error per distance bin of the ToF sensor's reading.
Both are computed from a monitored phase's timeline, so a saved ``result.json`` has them too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeloop.compose.demo.metrics import ErrorStats

if TYPE_CHECKING:  # results.py imports this module for its targets
    from edgeloop.compose.demo.results import LoopResult, PhaseResult, TimelinePoint

BIN_MM = 50.0
"""Width of a distance bin in the per-distance table."""

WIDER_RANGE_SHARE = 0.1
"""A new world reaches beyond the old distances when this share of its frames lies outside
them (a drive's range varies a little from run to run; a label shift moves a fifth)."""

Labelled = tuple[float, float]
"""(ToF sensor reading, signed error) of one labelled, predicted frame, in mm."""


def labelled(points: Iterable[TimelinePoint], version: str, start_s: float | None = None,
             end_s: float | None = None) -> list[Labelled]:
    """The frames ``version`` answered with a label, captured in [start_s, end_s)."""
    return [(p.sensor_mm, p.error_mm) for p in points
            if p.model_version == version and p.sensor_mm is not None and p.error_mm is not None
            and (start_s is None or p.t_s >= start_s) and (end_s is None or p.t_s < end_s)]


def sensor_range(frames: Iterable[Labelled]) -> tuple[float, float] | None:
    """The lowest and highest sensor reading of ``frames`` (None without frames)."""
    readings = [sensor for sensor, _ in frames]
    return (min(readings), max(readings)) if readings else None


def inside(frames: Iterable[Labelled], span: tuple[float, float]) -> ErrorStats:
    """The error statistics of the frames whose sensor reading lies within ``span``."""
    low, high = span
    return ErrorStats.of(error for sensor, error in frames if low <= sensor <= high)


def bin_of(sensor_mm: float, width: float = BIN_MM) -> float:
    """The lower edge of the distance bin holding ``sensor_mm``."""
    return math.floor(sensor_mm / width) * width


def by_bin(frames: Iterable[Labelled], width: float = BIN_MM) -> dict[float, ErrorStats]:
    """Error statistics per distance bin (keyed by the bin's lower edge)."""
    errors: dict[float, list[float]] = {}
    for sensor, error in frames:
        errors.setdefault(bin_of(sensor, width), []).append(error)
    return {low: ErrorStats.of(values) for low, values in sorted(errors.items())}


@dataclass(frozen=True)
class PhaseDistances:
    """One monitored phase's labelled frames: the pre-drift version's in the old world, the
    retrained version's and the settled version's in the new one."""

    pre_drift: list[Labelled]
    after: list[Labelled]
    settled: list[Labelled]

    @property
    def pre_drift_range(self) -> tuple[float, float] | None:
        """The distances the pre-drift version was measured on."""
        return sensor_range(self.pre_drift)

    def share_beyond_pre_drift_range(self) -> float:
        """The share of the retrained version's frames outside the pre-drift distances."""
        span = self.pre_drift_range
        if span is None or not self.after:
            return 0.0
        low, high = span
        return sum(not low <= sensor <= high for sensor, _ in self.after) / len(self.after)

    def after_inside_pre_drift_range(self) -> ErrorStats | None:
        """The retrained version's error on the new world's frames within the old range."""
        span = self.pre_drift_range
        return inside(self.after, span) if span is not None and self.after else None


def phase_distances(loop: LoopResult, phase: PhaseResult) -> PhaseDistances:
    """The labelled frames of a monitored phase, split as the phase's MAEs are."""
    red_at = loop.red_at_s
    return PhaseDistances(
        pre_drift=labelled(loop.timeline, phase.version_before, end_s=red_at),
        after=labelled(loop.timeline, phase.version_after, start_s=red_at)
        if phase.version_after and phase.version_after != phase.version_before else [],
        settled=labelled(loop.timeline, phase.version_settled)
        if phase.version_settled else [])
