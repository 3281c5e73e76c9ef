"""Micro-batching: single frames from many streams gathered into one model call.

A convolution over 8 images costs far less than 8 convolutions over one, so frames
that arrive close together (from different robots) are predicted together. Frames are
gathered per model version and image shape (images of different shapes cannot share
a tensor). A batch leaves when it is full (``max_batch_size``) or when its oldest frame
has waited ``max_wait_ms``, or at once when the model has a free slot
(``dispatch_when_idle``); while all ``max_concurrent_batches`` slots are busy the
queue keeps filling, so batches grow under load and latency stays low when it is light.

A batch that fails fails only its own callers. Each call learns how long it waited for
its batch (:class:`BatchedPrediction`), and :meth:`MicroBatcher.stats` counts batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from edgeloop.gateway.hosts.base import ModelHost, ModelKey, ModelUnavailable
from edgeloop.gateway.hosts.served import ServedFrames
from edgeloop.gateway.hosts.tensors import check_images
from edgeloop.platform import log_context
from opentelemetry import trace

log = logging.getLogger(__name__)

QueueKey = tuple[ModelKey, tuple[int, ...]]


@dataclass(frozen=True)
class BatchingConfig:
    """Configuration of :class:`MicroBatcher`."""

    max_batch_size: int = 8
    """Most images in one model call."""
    max_wait_ms: float = 2.0
    """Longest a frame waits for its batch to fill before the batch leaves anyway."""
    max_concurrent_batches: int = 2
    """Batches in the model at once (one per core suits the embedded host)."""
    dispatch_when_idle: bool = True
    """A frame that finds a batch slot free leaves at once instead of waiting for company:
    waiting only pays while the model is busy, and then frames gather anyway."""


@dataclass(frozen=True)
class BatchedPrediction:
    """One frame's answer and how it was batched."""

    distance_mm: float
    batch_wait_s: float
    """From the call to its batch leaving for the model (queueing included)."""
    batch_size: int


@dataclass
class BatchStats:
    """Counters since the batcher started."""

    batches: int = 0
    images: int = 0
    failed_batches: int = 0
    sizes: Counter[int] = field(default_factory=Counter)
    """How many batches had each size."""

    @property
    def mean_batch_size(self) -> float:
        """Images per batch on average (0 before the first batch)."""
        return self.images / self.batches if self.batches else 0.0


@dataclass
class _Waiter:
    image: np.ndarray
    future: asyncio.Future[tuple[float, float, int]]
    queued_at: float


@dataclass
class _Queue:
    waiters: list[_Waiter] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class MicroBatcher(ModelHost):
    """Wraps any :class:`ModelHost`; :meth:`predict_one` batches frames across callers.

    It is a ``ModelHost`` itself, so it can stand wherever a host does: ``predict``
    passes whole batches straight through, ``release`` first lets the frames already
    queued for the version finish.
    """

    def __init__(self, host: ModelHost, config: BatchingConfig | None = None,
                 served: ServedFrames | None = None) -> None:
        self.host = host
        self.config = config or BatchingConfig()
        self.served = served
        """Where the first frame of each batch is kept, if given (a twin judged on them)."""
        if self.config.max_batch_size < 1 or self.config.max_concurrent_batches < 1:
            raise ValueError("max_batch_size and max_concurrent_batches must be >= 1")
        self._queues: dict[QueueKey, _Queue] = {}
        self._slots = asyncio.Semaphore(self.config.max_concurrent_batches)
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled = 0  # batch tasks created and not finished (waiting for a slot too)
        self._pending: Counter[ModelKey] = Counter()
        self._idle = asyncio.Condition()
        self._releasing: set[ModelKey] = set()
        self._stats = BatchStats()

    def stats(self) -> BatchStats:
        """A copy of the counters."""
        s = self._stats
        return BatchStats(s.batches, s.images, s.failed_batches, Counter(s.sizes))

    async def predict_one(self, key: ModelKey, image: np.ndarray) -> float:
        """The distance in mm for one ``uint8[h, w, 3]`` image, predicted in a batch."""
        return (await self.predict_batched(key, image)).distance_mm

    async def predict_batched(self, key: ModelKey, image: np.ndarray) -> BatchedPrediction:
        """Like :meth:`predict_one`, with the batch wait and size; also set on the span."""
        check_images(image[np.newaxis] if isinstance(image, np.ndarray) else image)
        if key in self._releasing:
            raise ModelUnavailable(f"{key.model_name} v{key.version} is being released")
        loop = asyncio.get_running_loop()
        waiter = _Waiter(image, loop.create_future(), loop.time())
        self._enqueue((key, image.shape), waiter)
        distance, wait_s, size = await waiter.future
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("edgeloop.batch_wait_ms", wait_s * 1000)
            span.set_attribute("edgeloop.batch_size", size)
        return BatchedPrediction(distance, wait_s, size)

    def _enqueue(self, qkey: QueueKey, waiter: _Waiter) -> None:
        queue = self._queues.setdefault(qkey, _Queue())
        queue.waiters.append(waiter)
        self._pending[qkey[0]] += 1
        if len(queue.waiters) % self.config.max_batch_size == 0:
            self._dispatch(qkey)  # a batch is full (once per batch, not once per frame)
        elif self._idle_slot():
            self._dispatch(qkey)  # the model is idle: frames of this tick still join the batch
        elif queue.timer is None:
            delay = self.config.max_wait_ms / 1000
            queue.timer = asyncio.get_running_loop().call_later(delay, self._dispatch, qkey)

    def _dispatch(self, qkey: QueueKey) -> None:
        """Send the queue's next batch (it takes its frames once a slot is free)."""
        queue = self._queues.get(qkey)
        if queue is None:
            return  # emptied by batches that left before this timer fired
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        task = asyncio.get_running_loop().create_task(self._run_batch(qkey))
        self._scheduled += 1
        self._tasks.add(task)
        task.add_done_callback(self._batch_task_done)

    def _idle_slot(self) -> bool:
        return self.config.dispatch_when_idle and \
            self._scheduled < self.config.max_concurrent_batches

    def _batch_task_done(self, task: asyncio.Task[None]) -> None:
        self._scheduled -= 1
        self._tasks.discard(task)
        waiting = [(q.waiters[0].queued_at, k) for k, q in self._queues.items() if q.waiters]
        if waiting and self._idle_slot():
            # A slot just freed: the longest-waiting frames need not sit out their timer.
            self._dispatch(min(waiting, key=lambda item: item[0])[1])

    async def _run_batch(self, qkey: QueueKey) -> None:
        async with self._slots:
            taken = self._take(qkey)
            live = [w for w in taken if not w.future.done()]  # callers that gave up: skipped
            try:
                if live:
                    await self._predict(qkey[0], live)
            finally:
                if taken:
                    await self._done(qkey[0], len(taken))

    def _take(self, qkey: QueueKey) -> list[_Waiter]:
        """Remove the next batch from the queue; re-arm the timer for what stays behind."""
        queue = self._queues.get(qkey)
        if queue is None:
            return []
        size = self.config.max_batch_size
        batch, queue.waiters = queue.waiters[:size], queue.waiters[size:]
        if queue.waiters and queue.timer is None:
            loop = asyncio.get_running_loop()
            if len(queue.waiters) >= size:
                self._dispatch(qkey)
            else:
                due = queue.waiters[0].queued_at + self.config.max_wait_ms / 1000
                queue.timer = loop.call_later(max(0.0, due - loop.time()), self._dispatch, qkey)
        elif not queue.waiters:
            self._queues.pop(qkey, None)
            if queue.timer is not None:
                queue.timer.cancel()
        return batch

    async def _predict(self, key: ModelKey, batch: list[_Waiter]) -> None:
        """One host call for ``batch``; its outcome goes to its callers and only to them."""
        sent = asyncio.get_running_loop().time()
        self._count(len(batch))
        if self.served is not None:
            self.served.add(batch[0].image)
        try:
            distances = await self.host.predict_frames(key, [w.image for w in batch])
            if len(distances) != len(batch):
                raise ModelUnavailable(f"{key.model_name} v{key.version} answered "
                                       f"{len(distances)} values for {len(batch)} images")
        except Exception as exc:
            self._stats.failed_batches += 1
            with log_context(model=key.model_name, version=key.version):
                log.warning("batch failed", extra={"batch_size": len(batch), "error": str(exc)})
            for waiter in batch:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            return
        for waiter, distance in zip(batch, distances, strict=True):
            if not waiter.future.done():
                waiter.future.set_result((float(distance), sent - waiter.queued_at, len(batch)))

    def _count(self, size: int) -> None:
        self._stats.batches += 1
        self._stats.images += size
        self._stats.sizes[size] += 1

    async def _done(self, key: ModelKey, count: int) -> None:
        self._pending[key] -= count
        if self._pending[key] <= 0:
            del self._pending[key]
            async with self._idle:
                self._idle.notify_all()

    async def ensure_loaded(self, key: ModelKey) -> None:
        """Load ``key`` in the wrapped host; it may take frames again if it was released."""
        self._releasing.discard(key)
        await self.host.ensure_loaded(key)

    async def predict(self, key: ModelKey, images: np.ndarray) -> np.ndarray:
        """Pass a whole batch straight to the host (it is a batch already)."""
        return await self.host.predict(key, images)

    async def predict_frames(self, key: ModelKey, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Pass frames straight to the host (they are a batch already)."""
        return await self.host.predict_frames(key, frames)

    async def release(self, key: ModelKey) -> None:
        """Refuse new frames for ``key``, let the queued ones finish, then release it."""
        self._releasing.add(key)
        async with self._idle:
            await self._idle.wait_for(lambda: self._pending[key] <= 0)
        await self.host.release(key)

    async def close(self) -> None:
        """Fail queued frames with ModelUnavailable, wait for running batches, close the host."""
        for queue in self._queues.values():
            if queue.timer is not None:
                queue.timer.cancel()
            for waiter in queue.waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(ModelUnavailable("the model host is closing"))
        self._queues.clear()
        self._pending.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.host.close()
