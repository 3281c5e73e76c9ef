"""The exit watchdog: a pytest run whose fixtures leave something running still ends in time.

Each case runs a small real pytest session in a subprocess (the plugin is loaded from its
entry point, as in ``./run test``) and checks how and when that process ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

HANG_BOUND_S = 10
"""The watchdog bound given to the hanging sessions."""
MARGIN_S = 60
"""Start-up of the subprocess and the watchdog's own work, on a loaded 2-core machine."""

LEAKED_AIO_SERVER = """
    import pytest
    from grpc import aio

    @pytest.fixture
    async def server():
        server = aio.server()
        server.add_insecure_port("127.0.0.1:0")
        await server.start()
        yield server  # never stopped: garbage-collected after its loop closed

    async def test_serves(server):
        assert server is not None
"""

HANGING_THREAD = """
    import threading
    import pytest

    @pytest.fixture
    def worker():
        thread = threading.Thread(target=threading.Event().wait, name="forgotten-worker")
        thread.start()
        yield thread  # never stopped: a non-daemon thread joined forever at exit

    def test_interrupted(worker):
        pytest.exit("stopping the run", returncode=7)
"""

LEFTOVER_CHILD = """
    import subprocess

    def test_starts_a_child(tmp_path):
        child = subprocess.Popen(["sleep", "600"])
        (tmp_path.parent.parent / "child.pid").write_text(str(child.pid))
"""

SPAWNED_POOL = """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    def test_uses_a_spawned_child():
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            assert pool.submit(os.getpid).result() != os.getpid()
"""


_TERMINABLE = """
    import os
    import signal
    import sys
    import time
    import pytest

    @pytest.fixture(scope="session")
    def daemon(tmp_path_factory):
        marker = tmp_path_factory.getbasetemp().parent / "torn-down"
        yield
        marker.write_text("the session fixture was torn down")
"""
"""A session fixture that leaves a marker when it is torn down, and what the sessions import."""

TERMINATED_MID_TEST = _TERMINABLE + """
    def test_waits_to_be_terminated(daemon, tmp_path):
        (tmp_path.parent.parent / "started").write_text(str(os.getpid()))
        time.sleep(600)
"""

TERMINATED_AFTER_A_LIBRARY_TOOK_SIGTERM = _TERMINABLE + """
    def test_a_library_takes_sigterm(daemon):
        # what ray.init does in a driver
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    def test_waits_to_be_terminated(daemon, tmp_path):
        (tmp_path.parent.parent / "started").write_text(str(os.getpid()))
        time.sleep(600)

    def test_never_runs():
        raise AssertionError("the run went on after SIGTERM")
"""

TERMINATED_THROUGH_A_LIBRARY_HANDLER = _TERMINABLE + """
    def test_a_library_takes_sigterm_then_waits(daemon, tmp_path):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
        (tmp_path.parent.parent / "started").write_text(str(os.getpid()))
        time.sleep(600)

    def test_never_runs():
        raise AssertionError("the run went on after SIGTERM")
"""


def _command(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "no:hypothesispytest", f"--basetemp={tmp_path / 'base'}", "test_session.py"]


def _write_session(tmp_path: Path, source: str) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n"
                                         "asyncio_default_fixture_loop_scope = function\n")
    (tmp_path / "test_session.py").write_text(textwrap.dedent(source))


def run_session(tmp_path: Path, source: str, bound_s: float) -> tuple[int, str, float]:
    """Run ``source`` as a test module in a pytest subprocess: (status, output, seconds)."""
    _write_session(tmp_path, source)
    env = {**os.environ, "EDGELOOP_TEST_EXIT_TIMEOUT_S": str(bound_s)}
    started = time.monotonic()
    # The subprocess's own basetemp keeps its tmp_path under ours (LEFTOVER_CHILD uses it).
    result = subprocess.run(
        _command(tmp_path), cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=bound_s + MARGIN_S + 60,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def test_a_leaked_aio_server_cannot_hang_the_exit(tmp_path: Path) -> None:
    status, output, seconds = run_session(tmp_path, LEAKED_AIO_SERVER, HANG_BOUND_S)
    assert "1 passed" in output
    assert "edgeloop exit watchdog: the test process has not exited" in output, output
    assert "AioServer.shutdown" in output  # the cause is in the output next to the stacks
    assert status == 1, output  # every test passed, but a run that hangs fails
    assert seconds < HANG_BOUND_S + MARGIN_S


def test_a_hanging_thread_is_named_and_the_real_status_kept(tmp_path: Path) -> None:
    status, output, seconds = run_session(tmp_path, HANGING_THREAD, HANG_BOUND_S)
    assert "Threads alive: forgotten-worker." in output, output
    assert "in _shutdown" in output  # the main thread's stack: joining threads at exit
    assert status == 7, output
    assert seconds < HANG_BOUND_S + MARGIN_S


def test_leftover_child_processes_are_killed_at_the_end(tmp_path: Path) -> None:
    status, output, _ = run_session(tmp_path, LEFTOVER_CHILD, 120)
    assert status == 0, output
    assert "edgeloop exit watchdog" not in output  # a clean exit does not wait for the bound
    pid = int((tmp_path / "child.pid").read_text())
    assert "killing processes the test run left behind" in output
    assert f"pid {pid}: sleep 600" in output
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_multiprocessings_resource_tracker_is_left_to_end_by_itself(tmp_path: Path) -> None:
    status, output, seconds = run_session(tmp_path, SPAWNED_POOL, 120)
    assert status == 0 and "1 passed" in output, output
    assert "resource_tracker" not in output and "left behind" not in output, output
    assert seconds < MARGIN_S  # no kill grace spent on a helper that ignores SIGTERM


def _terminate_when_started(tmp_path: Path, source: str) -> tuple[int, str]:
    """Run ``source``, SIGTERM pytest once its test wrote ``started``: (status, output)."""
    _write_session(tmp_path, source)
    run = subprocess.Popen(_command(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        started = tmp_path / "started"
        deadline = time.monotonic() + MARGIN_S
        while not started.exists():  # the test is running (not racing its start-up)
            assert run.poll() is None and time.monotonic() < deadline, "the test never started"
            time.sleep(0.1)
        run.terminate()
        output, _ = run.communicate(timeout=MARGIN_S)
    finally:
        if run.poll() is None:
            run.kill()
    return run.returncode, output


def test_sigterm_tears_the_fixtures_down_and_ends_the_run(tmp_path: Path) -> None:
    status, output = _terminate_when_started(tmp_path, TERMINATED_MID_TEST)
    assert (tmp_path / "torn-down").read_text() == "the session fixture was torn down"
    assert "KeyboardInterrupt" in output and "SIGTERM" in output, output
    assert status == 2, output  # pytest's status for an interrupted run


def test_sigterm_is_taken_back_from_a_library_that_took_it_in_an_earlier_test(
        tmp_path: Path) -> None:
    status, output = _terminate_when_started(tmp_path, TERMINATED_AFTER_A_LIBRARY_TOOK_SIGTERM)
    assert (tmp_path / "torn-down").read_text() == "the session fixture was torn down"
    assert "KeyboardInterrupt" in output and "SIGTERM" in output, output
    assert "the run went on" not in output and status == 2, output


def test_sigterm_through_a_library_handler_stops_the_run(tmp_path: Path) -> None:
    status, output = _terminate_when_started(tmp_path, TERMINATED_THROUGH_A_LIBRARY_HANDLER)
    assert (tmp_path / "torn-down").read_text() == "the session fixture was torn down"
    assert "SIGTERM (through a library's handler)" in output, output
    assert "the run went on" not in output and "1 failed" in output, output
