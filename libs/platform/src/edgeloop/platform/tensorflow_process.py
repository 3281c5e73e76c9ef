"""TensorFlow work in a child process, so a service that needs it now and then never imports it.

Imported once, TensorFlow stays for a process's whole life: ~600 MiB RSS and ~4 CPU seconds
of import on the 2-core dev VM, for a service that uses it a few seconds an hour (the
trainer exports and measures a model at a sweep's end; the registry checks a SavedModel's
signature and converts it to TFLite at registration). A :class:`TensorFlowProcess` is one
spawned child that imports TensorFlow (leanly, :mod:`edgeloop.platform.tensorflow_import`)
and the modules named, runs the calls given to it one at a time, and ends when told to
(:meth:`TensorFlowProcess.close`) or after ``idle_s`` without a call, giving its memory back;
and within a second of its service's death when the service is killed and cannot end it.

The child is spawned, not forked: a service holds threads, gRPC channels and a Ray driver
that a fork would copy half-way. It inherits the service's environment and priority, and
logs like the service: its records go to the same stderr in the same format, with the
caller's log context (model, version, ...), and TensorFlow's C++ lines written during a
call become records too (:func:`~edgeloop.platform.tensorflow_import.native_lines_logged`),
so the service's log stays JSON records only.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from edgeloop.platform.logs import (
    LoggingSetup,
    configure_logging,
    current_log_context,
    log_context,
    logging_setup,
)
from edgeloop.platform.tensorflow_import import import_tensorflow, native_lines_logged

T = TypeVar("T")
log = logging.getLogger(__name__)
PARENT_CHECK_S = 1.0
"""How often the child checks that its parent still runs (it ends within this of its death)."""


@dataclass(frozen=True)
class FunctionByName:
    """A function named by its module, imported only where it is called: a caller that must
    not import TensorFlow hands :meth:`TensorFlowProcess.run` a function of a module that does.
    """

    module: str
    name: str

    def __call__(self, *args: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args)


def _exit_with_parent(parent: int) -> None:
    # A killed service (SIGKILL, OOM) cannot end its child, and the child would wait on its
    # call queue forever, holding TensorFlow's memory: once re-parented, it ends itself.
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _start_child(imports: tuple[str, ...], setup: LoggingSetup | None) -> None:
    """The child's initializer: the parent's logging, then TensorFlow and ``imports``."""
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="exit-with-parent").start()
    if setup is not None:
        configure_logging(*setup)
    import_tensorflow()
    for name in imports:
        importlib.import_module(name)


def _call(function: Callable[..., T], args: tuple[Any, ...], context: Mapping[str, Any]) -> T:
    """One call in the child, with the caller's log context and TensorFlow's lines logged."""
    with log_context(**context), native_lines_logged():
        return function(*args)


class TensorFlowProcess:
    """One child process for TensorFlow calls, started when first needed.

    :meth:`start` spawns it early (so the import's seconds are off the path of the call
    that follows); :meth:`run` starts it if that has not happened; :meth:`close` ends it;
    with ``idle_s`` it also ends by itself that long after its last call, and the next
    call starts a new one. Calls run one at a time, in the order given; an exception raised
    in the child is raised again by :meth:`run`. A child that dies in a call (a crash in
    TensorFlow's C++) raises ``BrokenProcessPool`` there, and the next call gets a new child.
    """

    def __init__(self, imports: tuple[str, ...] = (), idle_s: float | None = None) -> None:
        self.imports = imports
        self.idle_s = idle_s
        self._pool: ProcessPoolExecutor | None = None
        self._child_pid: Future[int] | None = None
        self._running = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._ending: asyncio.Future[None] | None = None

    @property
    def alive(self) -> bool:
        """Whether a child is started (or starting) now."""
        return self._pool is not None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before it has started, or after)."""
        started = self._child_pid
        if self._pool is None or started is None or not started.done() or started.exception():
            return None
        return started.result()

    def start(self) -> None:
        """Spawn the child and let it import TensorFlow now (idempotent, non-blocking)."""
        if self._pool is not None:
            return
        self._pool = ProcessPoolExecutor(max_workers=1,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_child,
                                         initargs=(self.imports, logging_setup()))
        self._child_pid = self._pool.submit(os.getpid)  # a pool spawns its process at a call

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the child; ``function`` and its arguments must pickle."""
        self._cancel_idle_timer()
        self.start()
        pool = self._pool
        assert pool is not None
        self._running += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, _call, function, args, dict(current_log_context()))
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = None  # the next call starts a new child
            log.error("the TensorFlow child process died in a call",
                      extra={"function": getattr(function, "__qualname__", str(function))})
            raise
        finally:
            self._running -= 1
            if self._running == 0 and self.idle_s is not None:
                self._idle_timer = asyncio.get_running_loop().call_later(
                    self.idle_s, self._end_idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _end_idle(self) -> None:
        self._idle_timer = None
        if self._pool is None or self._running:
            return
        pool, self._pool = self._pool, None
        log.debug("TensorFlow child process idle: ended", extra={"idle_s": self.idle_s})
        pool.shutdown(wait=False)  # nothing queued: the child exits at once

    def close_soon(self) -> None:
        """Start ending the child and return at once (its exit takes TensorFlow ~0.7 s);
        :meth:`close` waits for it. A call still running ends first."""
        self._cancel_idle_timer()
        pool, self._pool = self._pool, None
        if pool is not None:
            self._ending = asyncio.ensure_future(
                asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True))

    async def close(self) -> None:
        """End the child, if one was started, and wait until it has exited (seconds: a
        call still running ends first)."""
        self.close_soon()
        if self._ending is not None:
            await asyncio.shield(self._ending)

