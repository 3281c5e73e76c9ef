"""A sweep's TensorFlow work in a child process, so the trainer process never imports it.

The trainer needs TensorFlow only at the end of a sweep: to export the best trial as a
SavedModel and to measure it and the champion on the holdout. Imported in the trainer
itself, TensorFlow would stay for the process's whole life (about 550 MiB PSS, and a
third TensorFlow process beside the two trial workers at a sweep's peak). Instead, each
sweep has a :class:`ModelProcess`: one spawned child that imports TensorFlow once, runs
the export and both evaluations, and exits when the registration is done, giving its
memory back. The sweep starts it while its last trial trains (a CPU is free then), so the
import's seconds are not added to the sweep's end. It runs on the trainer's machine (it
reads the trial's checkpoint, the snapshot's arrays and the champion's published
SavedModel from local paths) and inherits the trainer's environment and priority.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def _import_tensorflow() -> None:
    """The child's initializer: TensorFlow and the model family, imported once, lean."""
    import edgeloop.trainer.model  # noqa: F401, PLC0415 - the point of the child process


class ModelProcess:
    """One child process for a sweep's TensorFlow calls, started when first needed.

    :meth:`start` spawns it early (the sweep does once its last trial runs and a CPU is
    free, so TensorFlow's import is off the sweep's end); :meth:`run` starts it if that has
    not happened; :meth:`close` ends it. Calls run one at a time, in the order given; an
    exception raised in the child is raised again by :meth:`run`. The child is spawned (not
    forked: the trainer holds threads, gRPC channels and a Ray driver that a fork would
    copy half-way).
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Spawn the child and let it import TensorFlow now (idempotent, non-blocking)."""
        if self._pool is not None:
            return
        self._pool = ProcessPoolExecutor(max_workers=1,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_import_tensorflow)
        self._pool.submit(os.getpid)  # a pool spawns its process at the first call

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the child; ``function`` and its arguments must pickle."""
        self.start()
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    async def close(self) -> None:
        """End the child, if one was started; waits for a call still running (seconds)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
