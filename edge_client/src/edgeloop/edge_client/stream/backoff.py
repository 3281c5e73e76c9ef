"""Exponential backoff with jitter for reconnects."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``initial * multiplier**attempt`` capped at ``maximum``, with "equal jitter".

    Half of each delay is fixed and half is random, so a fleet that lost its gateway at
    the same moment does not reconnect in lockstep, yet no robot retries in a tight loop.
    """

    initial_s: float = 0.2
    maximum_s: float = 10.0
    multiplier: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        ceiling = min(self.maximum_s, self.initial_s * self.multiplier ** self.attempt)
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Start again from the initial delay (after a successful connection)."""
        self.attempt = 0
