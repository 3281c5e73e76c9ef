"""JPEG decoding off the event loop, many frames per thread hop.

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
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
_Outcome = tuple[bool, object]
"""(True, value) or (False, the exception the decode raised)."""


@dataclass
class _Group(Generic[T]):
    jpegs: list[bytes] = field(default_factory=list)
    futures: list[asyncio.Future[T]] = field(default_factory=list)


class BatchDecoder(Generic[T]):
    """Runs ``decode`` on thread-pool threads, one submission per thread per loop turn."""

    def __init__(self, decode: Callable[[bytes], T], threads: int = 2,
                 max_group: int = 64) -> None:
        self._decode = decode
        self._threads = threads
        self._max_group = max_group
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="edgeloop-decode")
        self._pending: _Group[T] = _Group()

    async def decode(self, jpeg: bytes) -> T:
        """The decoded ``jpeg``; raises what ``decode`` raised for it."""
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
