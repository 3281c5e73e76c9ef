"""The distance-dependent reversing speed of the thesis car."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeedProfile:
    """Full speed far from the wall, slowing linearly inside ``slow_mm``, stop at ``stop_mm``."""

    v_max_mm_s: float = 60.0
    v_min_mm_s: float = 12.0
    slow_mm: float = 150.0
    stop_mm: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.v_min_mm_s <= self.v_max_mm_s:
            raise ValueError("speed profile needs 0 < v_min_mm_s <= v_max_mm_s")
        if self.slow_mm <= 0 or self.stop_mm < 0:
            raise ValueError("speed profile needs slow_mm > 0 and stop_mm >= 0")

    def speed(self, distance_mm: float) -> float:
        """Reversing speed in mm/s at ``distance_mm`` from the wall (0 at or below stop)."""
        if distance_mm <= self.stop_mm:
            return 0.0
        ramp = min(1.0, (distance_mm - self.stop_mm) / self.slow_mm)
        return self.v_min_mm_s + (self.v_max_mm_s - self.v_min_mm_s) * ramp
