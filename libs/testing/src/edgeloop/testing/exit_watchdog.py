"""A bounded end for every pytest run (a pytest plugin, entry point ``edgeloop_exit_watchdog``).

A fixture that leaves a grpc.aio server, a non-daemon thread or a child process behind can
hang the interpreter *after* pytest printed its summary (a garbage-collected aio server
schedules ``AioServer.shutdown`` on a closed loop, and its threads are then joined forever).
CI would wait out its whole time limit. This plugin:

- arms a watchdog when the session finishes (before session fixtures are torn down and the
  summary is printed): if the process still runs ``EDGELOOP_TEST_EXIT_TIMEOUT_S`` seconds
  later (default 120, ``0`` disables it; ini option ``edgeloop_exit_timeout``), it prints
  which non-daemon threads are alive, dumps every thread's stack, kills the run's leftover
  child processes and exits with pytest's exit status, or 1 if that status was 0 (a run that
  hangs is not a passing run). A C-level ``faulthandler`` timer a little later is the
  backstop for a hang in interpreter finalization, where Python threads no longer run;
- kills, at the very end of the run, the child processes the tests left behind (descendants
  of the pytest process), naming each on stderr;
- takes SIGTERM (a runner's or a developer's ``kill``) as Ctrl-C: pytest stops and tears its
  fixtures down before it exits. Without it, a terminated run left behind what its fixtures
  started as daemons of their own (a Ray head node, a PostgreSQL cluster), running and using
  CPU until someone found them. A second SIGTERM ends the process at once. A library that
  takes SIGTERM for itself during a test (Ray's driver, at ``ray.init``: ``sys.exit(15)``)
  gets it taken back before the next test, and a test that SIGTERM ended through such a
  handler (it fails with ``SystemExit(15)``) stops the run as Ctrl-C would: a CI run
  terminated in a Ray test once ran on, failing, and left two PostgreSQL clusters running.

Only the outermost pytest session in a process arms it (an in-process ``pytester`` run does
not), so a nested run never ends the process that hosts it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
from typing import TextIO

import psutil
import pytest

TIMEOUT_ENV = "EDGELOOP_TEST_EXIT_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 120.0
HUNG_EXIT_STATUS = 1
"""Exit status of a run that hung after all its tests passed."""
BACKSTOP_EXTRA_S = 30.0
"""The faulthandler backstop fires this long after the Python watchdog."""
KILL_GRACE_S = 5.0

_active_sessions = 0
_watchdog: ExitWatchdog | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "edgeloop_exit_timeout",
        f"seconds the process may take to exit after the session finished before the "
        f"edgeloop exit watchdog dumps stacks and exits (0 disables; env {TIMEOUT_ENV} wins)",
        default=str(DEFAULT_TIMEOUT_S),
    )


def exit_timeout_s(config: pytest.Config) -> float:
    """The configured bound: ``EDGELOOP_TEST_EXIT_TIMEOUT_S``, else the ini option."""
    raw = os.environ.get(TIMEOUT_ENV) or str(config.getini("edgeloop_exit_timeout"))
    try:
        value = float(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"{TIMEOUT_ENV}: not a number of seconds: {raw!r}") from exc
    if value < 0:
        raise pytest.UsageError(f"{TIMEOUT_ENV}: must be >= 0, got {raw!r}")
    return value


def leftover_processes() -> list[psutil.Process]:
    """Processes this run left behind: the pytest process's descendants still alive.

    Only descendants: anything else in the process group (the shell or runner that
    started pytest, its siblings) is not ours to end. Not multiprocessing's resource
    tracker either: Python starts one for the first spawned child process and it ends by
    itself when pytest exits (it reads a pipe only pytest holds); it ignores SIGTERM, so
    ending it here would only add the kill grace to every run.
    """
    return [proc for proc in psutil.Process().children(recursive=True)
            if not _is_resource_tracker(proc)]


def _is_resource_tracker(proc: psutil.Process) -> bool:
    try:
        return "multiprocessing.resource_tracker" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:200] or proc.name()}"
    except psutil.Error:
        return f"pid {proc.pid}"


def kill_leftovers(out: TextIO) -> list[str]:
    """SIGTERM the leftovers, SIGKILL those still alive after a grace; name each on ``out``."""
    procs = leftover_processes()
    if not procs:
        return []
    names = [_describe(p) for p in procs]
    out.write("edgeloop: killing processes the test run left behind:\n")
    for name in names:
        out.write(f"  {name}\n")
    out.flush()
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=KILL_GRACE_S)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=KILL_GRACE_S)
    return names


def _flush_std_streams() -> None:
    """Flush pytest's buffered output (summary) before ``os._exit``, which would drop it.

    In a helper thread with a bound: a main thread stuck inside a write holds the lock.
    """

    def flush() -> None:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()

    flusher = threading.Thread(target=flush, name="edgeloop-exit-flush", daemon=True)
    flusher.start()
    flusher.join(KILL_GRACE_S)


class ExitWatchdog:
    """Ends the process with the session's status if it has not exited in time."""

    def __init__(self, session: pytest.Session, timeout_s: float) -> None:
        self.session = session
        self.timeout_s = timeout_s
        # A duplicate of stderr as it is now: output capture may replace fd 2 later.
        self.out = os.fdopen(os.dup(sys.__stderr__.fileno()), "w", buffering=1)
        self._thread = threading.Thread(target=self._run, name="edgeloop-exit-watchdog",
                                        daemon=True)

    def arm(self) -> None:
        faulthandler.dump_traceback_later(self.timeout_s + BACKSTOP_EXTRA_S, exit=True,
                                          file=self.out)
        self._thread.start()

    def status(self) -> int:
        status = int(self.session.exitstatus)
        return status if status != 0 else HUNG_EXIT_STATUS

    def _run(self) -> None:
        threading.Event().wait(self.timeout_s)
        status = self.status()
        _flush_std_streams()
        threads = [f"{t.name}{' (daemon)' if t.daemon else ''}" for t in threading.enumerate()
                   if t.is_alive() and t is not threading.current_thread()]
        self.out.write(
            f"\nedgeloop exit watchdog: the test process has not exited {self.timeout_s:g} s "
            f"after the session finished (session exit status "
            f"{int(self.session.exitstatus)}): it hangs at exit. Threads alive: "
            f"{', '.join(threads)}. A fixture probably left a server, thread or process "
            f"running (e.g. a grpc.aio server never stopped). Stacks of every thread:\n"
        )
        self.out.flush()
        faulthandler.dump_traceback(file=self.out, all_threads=True)
        try:
            kill_leftovers(self.out)
        finally:
            self.out.write(f"edgeloop exit watchdog: exiting with status {status}\n")
            self.out.flush()
            os._exit(status)


class _Sigterm:
    """Whether this plugin handles SIGTERM for the run, and whether one has come."""

    handled = False
    received = False


def _interrupt(signum: int, frame: object) -> None:
    _Sigterm.received = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process
    raise KeyboardInterrupt("SIGTERM")


def interrupt_on_sigterm() -> None:
    """Make SIGTERM interrupt the run as Ctrl-C does (fixtures torn down), unless someone
    else already handles it or this is not the main thread (where signals are handled)."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
        _Sigterm.handled = True


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _active_sessions
    _active_sessions += 1
    if _active_sessions == 1:
        interrupt_on_sigterm()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Take SIGTERM back from a library that took it during an earlier test."""
    if _Sigterm.handled and not _Sigterm.received and \
            threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is not _interrupt:
        signal.signal(signal.SIGTERM, _interrupt)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    """A test ended by SIGTERM through a library's handler (``sys.exit(15)``) stops the run."""
    yield
    error = call.excinfo
    if _Sigterm.handled and error is not None and error.errisinstance(SystemExit) and \
            error.value.code == signal.SIGTERM:
        item.session.shouldstop = "SIGTERM (through a library's handler)"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    global _watchdog
    timeout_s = exit_timeout_s(session.config)
    if _active_sessions != 1 or timeout_s == 0 or _watchdog is not None:
        return
    _watchdog = ExitWatchdog(session, timeout_s)
    _watchdog.arm()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    global _active_sessions
    _active_sessions -= 1
    if _active_sessions == 0:
        kill_leftovers(sys.__stderr__)
