"""JPEG decoding: camera-sized frames on the event loop, larger ones on threads, many per hop.

Handing every frame to a thread pool on its own costs more Python work than the decode
itself under a fleet's load (a pool submission, a worker wake-up and a completion
callback per frame, all holding the GIL). Frames that arrive in the same event-loop turn
are therefore decoded together: the first one schedules a flush for the end of the turn,
and the flush splits what has gathered over the decode threads, one submission per
thread. No frame waits for company (the flush runs in the same turn), so a lone frame
costs what it did before, and a busy stream pays one hop per group.

The decoder (:mod:`edgeloop.platform.jpeg`) releases the GIL, so the threads decode in
parallel with the event loop.
Each frame keeps its own outcome: a bad JPEG fails only its own future.

Small frames skip the threads (``inline``): a robot's 320x240 frame decodes in ~0.2 ms,
less than its hop to a thread and back costs the event loop, the threads and the cores they
share. In the whole local stack at 100 robots x 4 fps the gateway then spent 9 % less CPU a
frame and answered 27 % more frames a second at full speed (bench/README.md, "Small frames
decoded on the event loop"). Large frames still go to the threads, so one camera sending
megapixel images cannot stall every other stream while it decodes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from edgeloop.platform.jpeg import pixels as jpeg_pixels

T = TypeVar("T")
INLINE_MAX_PIXELS = 640 * 480
"""Frames up to VGA decode on the event loop by default (~1 ms at most: 0.2 ms at 320x240)."""
_Outcome = tuple[bool, object]
"""(True, value) or (False, the exception the decode raised)."""


@dataclass
class _Group(Generic[T]):
    jpegs: list[bytes] = field(default_factory=list)
    futures: list[asyncio.Future[T]] = field(default_factory=list)


class BatchDecoder(Generic[T]):
    """Runs ``decode`` on thread-pool threads, one submission per thread per loop turn, or at
    once on the caller's thread for the frames ``inline`` says are cheap."""

    def __init__(self, decode: Callable[[bytes], T], threads: int = 2,
                 max_group: int = 64, inline: Callable[[bytes], bool] | None = None) -> None:
        self._decode = decode
        self._threads = threads
        self._max_group = max_group
        self._inline = inline
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="edgeloop-decode")
        self._pending: _Group[T] = _Group()

    async def decode(self, jpeg: bytes) -> T:
        """The decoded ``jpeg``; raises what ``decode`` raised for it."""
        if self._inline is not None and self._inline(jpeg):
            return self._decode(jpeg)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending.futures:
            loop.call_soon(self._flush, loop)
        self._pending.jpegs.append(jpeg)
        self._pending.futures.append(future)
        return await future

    def close(self) -> None:
        """Stop the decode threads (queued groups are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        group, self._pending = self._pending, _Group()
        size = max(1, min(self._max_group, math.ceil(len(group.jpegs) / self._threads)))
        for start in range(0, len(group.jpegs), size):
            jpegs = group.jpegs[start:start + size]
            futures = group.futures[start:start + size]
            try:
                work = self._pool.submit(_decode_each, self._decode, jpegs)
            except RuntimeError as exc:  # the pool is shut down: the gateway is stopping
                _settle(futures, [(False, exc)] * len(futures))
                continue
            work.add_done_callback(_on_loop(loop, futures))


def _decode_each(decode: Callable[[bytes], object], jpegs: Sequence[bytes]) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    for jpeg in jpegs:
        try:
            outcomes.append((True, decode(jpeg)))
        except Exception as exc:  # reported to that frame's caller alone
            outcomes.append((False, exc))
    return outcomes


def _on_loop(loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[T]]
             ) -> Callable[[ThreadFuture[list[_Outcome]]], None]:
    def done(work: ThreadFuture[list[_Outcome]]) -> None:
        if work.cancelled():
            outcomes: list[_Outcome] = [(False, asyncio.CancelledError())] * len(futures)
        elif (error := work.exception()) is not None:
            outcomes = [(False, error)] * len(futures)
        else:
            outcomes = work.result()
        if not loop.is_closed():
            loop.call_soon_threadsafe(_settle, futures, outcomes)
    return done


def _settle(futures: Sequence[asyncio.Future[T]], outcomes: Sequence[_Outcome]) -> None:
    for future, (ok, value) in zip(futures, outcomes, strict=True):
        if future.done():  # its stream went away meanwhile
            continue
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            future.set_exception(value)  # type: ignore[arg-type]


def small_frames(max_pixels: int) -> Callable[[bytes], bool]:
    """True for a JPEG whose header declares at most ``max_pixels`` (width x height), and for
    one without a readable header: its decode fails as fast as the header read did."""
    def small(jpeg: bytes) -> bool:
        declared = jpeg_pixels(jpeg)
        return declared is None or declared <= max_pixels
    return small
