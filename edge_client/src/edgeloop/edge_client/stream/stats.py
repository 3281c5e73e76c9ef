"""Stream statistics: capture rate, round-trip percentiles and delivery counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StreamStats:
    """Counters of one stream client; round trips only of live (not late) frames."""

    started: float = field(default_factory=time.monotonic)
    submitted: int = 0
    written: int = 0
    resent: int = 0
    predictions: int = 0
    errors: int = 0
    late: int = 0
    dropped: int = 0
    evicted: int = 0
    reconnects: int = 0
    rtts_ms: list[float] = field(default_factory=list)

    def fps(self, now: float | None = None) -> float:
        """Frames submitted per second since the client started."""
        elapsed = (now or time.monotonic()) - self.started
        return self.submitted / elapsed if elapsed > 0 else 0.0

    def rtt_percentiles(self) -> tuple[float | None, float | None]:
        """Round-trip p50 and p99 in milliseconds (None before the first answer)."""
        return rtt_percentiles(self.rtts_ms)


def rtt_percentiles(rtts_ms: list[float]) -> tuple[float | None, float | None]:
    """p50 and p99 of ``rtts_ms`` (None, None when empty)."""
    if not rtts_ms:
        return None, None
    p50, p99 = np.percentile(np.asarray(rtts_ms, np.float64), [50, 99])
    return float(p50), float(p99)
