"""TensorFlowProcess: TensorFlow calls in one spawned child that ends when closed or idle."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from edgeloop.platform.errors import InvalidArgument, Unimplemented
from edgeloop.platform.tensorflow_process import TensorFlowProcess


def _maps_tensorflow(pid: int) -> bool:
    return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()


def _spawned_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "--multiprocessing-fork" in p.cmdline()]


def test_calls_run_in_one_child_that_holds_tensorflow_and_is_gone_after() -> None:
    async def scenario() -> tuple[int, int, bool]:
        child = TensorFlowProcess()
        try:
            first = await child.run(os.getpid)
            second = await child.run(os.getpid)
            assert child.pid == first
            return first, second, _maps_tensorflow(first)
        finally:
            await child.close()

    first, second, loaded = asyncio.run(scenario())
    assert first == second != os.getpid(), "one child for every call"
    assert loaded, "the child imported TensorFlow"
    assert not psutil.pid_exists(first), "the child exits (and is reaped) at close"


def test_a_child_started_early_serves_the_later_calls_and_close_ends_it() -> None:
    async def scenario() -> tuple[list[int], int]:
        process = TensorFlowProcess()
        await process.close()  # nothing started: nothing to end
        assert not _spawned_children()
        process.start()
        process.start()  # once is enough: one child
        spawned = [p.pid for p in _spawned_children()]
        served_by = await process.run(os.getpid)
        await process.close()
        await process.close()
        return spawned, served_by

    spawned, served_by = asyncio.run(scenario())
    assert spawned == [served_by], "the early child serves the calls"
    assert not psutil.pid_exists(served_by)



def test_close_soon_returns_at_once_and_a_later_close_waits_for_the_exit() -> None:
    async def scenario() -> tuple[int, bool, bool]:
        process = TensorFlowProcess()
        pid = await process.run(os.getpid)
        process.close_soon()
        assert not process.alive and process.pid is None
        still_there = psutil.pid_exists(pid)  # TensorFlow's exit takes a while
        await process.close()
        return pid, still_there, psutil.pid_exists(pid)

    pid, still_there, after_close = asyncio.run(scenario())
    assert still_there, "close_soon did not wait for the child's exit"
    assert not after_close, "close waited for the exit close_soon began"

def test_an_idle_child_ends_by_itself_and_the_next_call_starts_another() -> None:
    async def scenario() -> tuple[int, bool, int]:
        process = TensorFlowProcess(idle_s=0.2)
        try:
            first = await process.run(os.getpid)
            deadline = asyncio.get_running_loop().time() + 120
            while psutil.pid_exists(first):  # ends on its own, 0.2 s after the call
                assert asyncio.get_running_loop().time() < deadline, "the idle child stayed"
                await asyncio.sleep(0.05)
            alive_after_idle = process.alive or process.pid is not None
            second = await process.run(os.getpid)
            return first, alive_after_idle, second
        finally:
            await process.close()

    first, alive_after_idle, second = asyncio.run(scenario())
    assert not alive_after_idle, "nor has it a pid"
    assert second != first and not psutil.pid_exists(second)


def test_a_busy_child_is_not_ended_for_idleness() -> None:
    async def scenario() -> list[int]:
        process = TensorFlowProcess(idle_s=1.0)
        try:
            pids = [await process.run(os.getpid)]
            # each call inside the idle time of the one before, 1.2 s from the first in all
            for _ in range(2):
                await asyncio.sleep(0.6)
                pids.append(await process.run(os.getpid))
            return pids
        finally:
            await process.close()

    assert len(set(asyncio.run(scenario()))) == 1


def test_an_error_in_the_child_is_raised_in_the_caller() -> None:
    async def scenario() -> None:
        child = TensorFlowProcess()
        try:
            await child.run(int, "not a number")
        finally:
            await child.close()

    with pytest.raises(ValueError, match="not a number"):
        asyncio.run(scenario())


def test_edgeloop_errors_cross_processes_whole() -> None:
    for error in (InvalidArgument("run_id", "no 'serving_default' signature"),
                  Unimplemented("Frob", "issue 99")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and copy.message == error.message
        assert copy.code == error.code and vars(copy) == vars(error)


def test_a_child_that_dies_in_a_call_is_replaced_at_the_next_call() -> None:
    async def scenario() -> tuple[int, int]:
        process = TensorFlowProcess()
        try:
            first = await process.run(os.getpid)
            with pytest.raises(Exception, match="terminated abruptly"):
                await process.run(os._exit, 3)
            return first, await process.run(os.getpid)
        finally:
            await process.close()

    first, second = asyncio.run(scenario())
    assert second != first


def test_the_child_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A service killed with SIGKILL cannot end its child; the child must not stay behind
    holding TensorFlow's memory (a supervisor would start a new service, and a new child)."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import asyncio, os, time
        from edgeloop.platform.tensorflow_process import TensorFlowProcess

        async def main():
            process = TensorFlowProcess()
            print(await process.run(os.getpid), flush=True)
            time.sleep(600)  # killed long before

        if __name__ == "__main__":
            asyncio.run(main())
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    child: psutil.Process | None = None
    try:
        child = psutil.Process(int(parent.stdout.readline()))  # type: ignore[union-attr]
        parent.kill()
        parent.wait(timeout=60)
        child.wait(timeout=60)  # re-parented, it checks every second and ends
    finally:
        parent.kill()
        parent.wait(timeout=60)
        parent.stdout.close()  # type: ignore[union-attr]
        if child is not None and child.is_running():
            child.kill()  # the test failed: leave nothing behind


def test_the_childs_records_and_tensorflows_lines_reach_the_service_log_as_json(
        tmp_path: Path) -> None:
    """The child logs like its parent (format, service name) with the caller's context, and
    what C++ writes to descriptor 2 during a call becomes a record."""
    code = textwrap.dedent("""
        import asyncio, logging, os
        from edgeloop.platform.logs import configure_logging, log_context
        from edgeloop.platform.tensorflow_process import TensorFlowProcess

        def convert(name):
            logging.getLogger("edgeloop.registry.saved_models").warning("converting %s", name)
            os.write(2, b"W0000 00:00:1796413776.558011   19319 tf_tfl_flatbuffer_helpers.cc:364]"
                        b" Ignored output_format.\\n")
            return name

        async def main():
            process = TensorFlowProcess()
            try:
                with log_context(model="distance", version="7"):
                    assert await process.run(convert, "v7") == "v7"
            finally:
                await process.close()

        if __name__ == "__main__":
            configure_logging("registry", "INFO", "json")
            asyncio.run(main())
    """)
    script = tmp_path / "child_logs.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line a JSON record
    assert {r["service"] for r in records} == {"registry"}
    mine = [r for r in records if r["msg"] == "converting v7"]
    native = [r for r in records if r["msg"] == "tensorflow: Ignored output_format."]
    assert len(mine) == 1 and len(native) == 1, lines
    for record in (*mine, *native):
        assert (record["model"], record["version"]) == ("distance", "7")
    assert native[0]["level"] == "warning"
    assert native[0]["source"] == "tf_tfl_flatbuffer_helpers.cc:364"
