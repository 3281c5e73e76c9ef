"""The trainer's SIGTERM after it joined Ray: a graceful stop, not abseil's crash handler.

Joining Ray installs abseil's failure-signal handler for SIGTERM: it dumps a stack trace as
if the process had crashed and arms a 3-second abort alarm before the service's own handler
runs (ray-project/ray#64830). The trainer takes the signal back
(``raycluster.reclaim_signal_handlers``). Run in a child process with its own local Ray, as
the service runs: the signal and the handlers are the process's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import asyncio, os, signal, sys
    import ray
    from edgeloop.trainer.raycluster import reclaim_signal_handlers

    async def main(reclaim: bool) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        # joined from a worker thread, as the trainer's start does
        await asyncio.to_thread(ray.init, address="local", num_cpus=1,
                                include_dashboard=False, log_to_driver=False)
        if reclaim:
            reclaim_signal_handlers()
        os.kill(os.getpid(), signal.SIGTERM)
        await stop.wait()
        await asyncio.sleep(4)  # a shutdown longer than abseil's 3-second alarm
        ray.shutdown()
        print("stopped after SIGTERM", file=sys.stderr)

    asyncio.run(main(sys.argv[1] == "reclaim"))
""")


def _stop_after_sigterm(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                          timeout=180)


def test_a_shutdown_longer_than_three_seconds_ends_cleanly() -> None:
    done = _stop_after_sigterm("reclaim")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stopped after SIGTERM" in done.stderr
    assert "SIGTERM received" not in done.stderr


def test_without_it_ray_aborts_the_same_shutdown() -> None:
    # what the reclaim is for: should Ray stop installing its handler, this fails and the
    # reclaim can go
    done = _stop_after_sigterm("keep")
    assert done.returncode != 0 and "SIGTERM received" in done.stderr, done.stderr[-2000:]
