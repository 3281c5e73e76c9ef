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
    refused: int = 0
    unrecorded: int = 0
    """Labelled frames answered but not recorded (the gateway's spool was full): sent again."""
    reconnects: int = 0
    rtts_ms: list[float] = field(default_factory=list)
    first_submit: float | None = None
    last_submit: float | None = None

    def record_submit(self) -> None:
        """Count one captured frame."""
        now = time.monotonic()
        self.submitted += 1
        self.first_submit = self.first_submit or now
        self.last_submit = now

    def fps(self) -> float:
        """Capture rate: frames per second between the first and the last submitted frame."""
        if self.first_submit is None or self.last_submit is None or self.submitted < 2:
            return 0.0
        span = self.last_submit - self.first_submit
        return (self.submitted - 1) / span if span > 0 else 0.0

    def rtt_percentiles(self) -> tuple[float | None, float | None]:
        """Round-trip p50 and p99 in milliseconds (None before the first answer)."""
        return rtt_percentiles(self.rtts_ms)


def rtt_percentiles(rtts_ms: list[float]) -> tuple[float | None, float | None]:
    """p50 and p99 of ``rtts_ms`` (None, None when empty)."""
    if not rtts_ms:
        return None, None
    p50, p99 = np.percentile(np.asarray(rtts_ms, np.float64), [50, 99])
    return float(p50), float(p99)
