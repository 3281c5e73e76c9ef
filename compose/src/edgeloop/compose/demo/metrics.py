"""Numbers of the evaluation: prediction errors, the monitored phases' timings, the targets.

Pure functions over plain values so they are unit-tested without any service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

DETECTION_TARGET_S = 30.0
"""Every monitored phase: drift detected within 30 s of the world's change (at 4 fps)."""
SERVING_TARGET_S = 90.0
"""Every monitored phase: the retrained model serving within 90 s of the world's change."""
RECOVERY_TARGET_RATIO = 1.2
"""Every monitored phase: MAE after retraining at most 1.2x the pre-drift MAE."""
DRIFT_TARGET_RATIO = 2.0
"""Every drift phase: MAE before retraining at least 2x the pre-drift MAE."""


@dataclass(frozen=True)
class ErrorStats:
    """Absolute prediction errors of a set of labelled frames."""

    count: int
    mae_mm: float | None
    max_mm: float | None
    p90_mm: float | None

    @classmethod
    def of(cls, errors: Iterable[float]) -> ErrorStats:
        """Statistics of signed or absolute errors (mm); NaN values are ignored."""
        values = sorted(abs(e) for e in errors if e is not None and not math.isnan(e))
        if not values:
            return cls(0, None, None, None)
        p90 = values[min(len(values) - 1, int(math.ceil(0.9 * len(values))) - 1)]
        return cls(len(values), sum(values) / len(values), values[-1], p90)

    def describe(self) -> str:
        """'MAE 6.9 mm, max 31.2 mm (n=420)' or 'no labelled predictions'."""
        if self.mae_mm is None:
            return "no labelled predictions"
        return f"MAE {self.mae_mm:.1f} mm, max {self.max_mm:.1f} mm (n={self.count})"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds, or None when either is missing."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


@dataclass(frozen=True)
class Target:
    """One benchmark target and whether the measured value meets it."""

    name: str
    measured: float | None
    limit: float
    unit: str
    at_least: bool = False
    """True: the measured value must be >= limit; False: <= limit."""

    @property
    def met(self) -> bool | None:
        """None when nothing was measured."""
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def describe(self) -> str:
        """'detection delay: 48.0 s (target <= 60 s) met'."""
        sign = ">=" if self.at_least else "<="
        value = "not measured" if self.measured is None else f"{self.measured:.2f} {self.unit}"
        verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[self.met]
        return f"{self.name}: {value} (target {sign} {self.limit:g} {self.unit}) {verdict}"


def first_after(times: Sequence[datetime], moment: datetime) -> datetime | None:
    """The earliest of ``times`` at or after ``moment``."""
    later = [t for t in times if t >= moment]
    return min(later) if later else None
