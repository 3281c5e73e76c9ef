"""The simulated VL53L0X: range along the sensor axis with realistic noise and limits.

Figures follow ST's datasheet for the default (non long-range) mode with a ~33-100 ms
timing budget on a white target: usable from about 20 mm to 1200 mm, a ranging error
that grows with distance (a few millimetres at 100 mm, a few percent near the limit),
integer millimetre output, and occasional reads with no valid result. Readings outside
the valid range come back as ``None`` ("no reading"), never as a number, exactly like
the driver does for the sensor's 8190/8191 out-of-range codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TofModel:
    """Noise and validity of the simulated range sensor."""

    min_mm: float = 20.0
    max_mm: float = 1200.0
    sigma_base_mm: float = 1.5
    sigma_fraction: float = 0.012
    bias_mm: float = 0.0
    dropout: float = 0.003
    grazing_deg: float = 25.0
    """Beyond this wall angle the return signal weakens and more reads fail."""

    def sigma(self, true_mm: float) -> float:
        """Standard deviation of a reading at ``true_mm``."""
        return self.sigma_base_mm + self.sigma_fraction * true_mm

    def read(self, true_mm: float, yaw_deg: float, rng: np.random.Generator) -> float | None:
        """One reading for a wall at ``true_mm`` along the axis, or ``None`` (no reading)."""
        measured = true_mm + self.bias_mm + rng.normal(0.0, self.sigma(true_mm))
        dropout = self.dropout
        excess = abs(yaw_deg) - self.grazing_deg
        if excess > 0:
            dropout += 0.04 * excess
        if rng.random() < dropout:
            return None
        if not self.min_mm <= measured <= self.max_mm:
            return None
        return float(round(measured))
