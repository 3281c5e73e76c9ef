"""Per-device limits: how many streams a device may hold open, and how fast it may send.

A robot that opens stream after stream, or sends faster than its camera could, takes the
gateway's CPU from every other robot. Each device may hold ``max_streams`` streams at once
(more than one, so a reconnect is not refused while a dead stream is noticed); a
further Hello is refused with RESOURCE_EXHAUSTED. Frames pass a token bucket per device
(``max_fps`` frames a second, bursts of one second's worth): a live frame over the rate is
refused with a ``FrameError`` RATE_LIMITED (code 8, RESOURCE_EXHAUSTED) — the robot knows,
nothing was recorded — while a late frame (replayed from the robot's offline buffer) waits
for its token instead, so a backlog is paced, never dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from edgeloop.gateway.contacts import Contact, DeviceContacts
from edgeloop.platform.errors import ResourceExhausted


@dataclass
class _Bucket:
    tokens: float
    updated: float


class DeviceLimits:
    """Open streams and a frame-rate token bucket per device (0 turns a limit off).

    The open streams are counted once, in each device's contact (``contacts``, which the
    status file reports): the limit reads that count.
    """

    def __init__(self, max_streams: int, max_fps: float,
                 clock: Callable[[], float] = time.monotonic,
                 contacts: DeviceContacts | None = None) -> None:
        self.max_streams = max_streams
        self.max_fps = max_fps
        self.burst = max(max_fps, 1.0)
        self.clock = clock
        self.contacts = contacts or DeviceContacts()
        self._buckets: dict[str, _Bucket] = {}

    @contextmanager
    def stream(self, device_id: str) -> Iterator[Contact]:
        """Hold one of the device's stream slots for the block (refused when all are taken);
        yields the device's contact, to be told of every frame."""
        held = self.open_streams(device_id)
        if self.max_streams and held >= self.max_streams:
            raise ResourceExhausted(
                f"device {device_id!r} already has {held} open streams, the "
                f"most allowed (EDGELOOP_MAX_STREAMS_PER_DEVICE); close one first")
        with self.contacts.stream(device_id) as contact:
            yield contact

    def open_streams(self, device_id: str) -> int:
        """Streams the device holds now."""
        return self.contacts.open_streams(device_id)

    def _refill(self, device_id: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.setdefault(device_id, _Bucket(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.max_fps)
        bucket.updated = now
        return bucket

    def try_take(self, device_id: str) -> bool:
        """Take a frame token if one is there (a live frame); False: over the rate."""
        if not self.max_fps:
            return True
        bucket = self._refill(device_id)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    async def take(self, device_id: str) -> None:
        """Wait for a frame token (a late frame: paced, never refused)."""
        while not self.try_take(device_id):
            bucket = self._buckets[device_id]
            await asyncio.sleep((1.0 - bucket.tokens) / self.max_fps)
