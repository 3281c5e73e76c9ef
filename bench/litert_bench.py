"""LiteRT in the gateway: a batch one frame at a time against one ``invoke`` per chunk.

The gateway's predict threads run LiteRT; LiteRT releases the GIL while it computes, and
takes it back after every ``invoke``. While the event loop runs Python, a thread waiting for
the GIL waits up to the interpreter's switch interval (5 ms by default) before it gets it.
This bench runs the trainer's ``thesis`` CNN, converted as the registry converts it, on
320x240 frames at batch sizes 1-32, alone and beside one busy Python thread (standing in
for the event loop), frame at a time (the runner before chunks) and with the gateway's
:class:`~edgeloop.gateway.hosts.litert.LiteRTRunner` (chunks of up to 8 frames). It prints
wall and CPU ms per frame of the predicting thread and checks both give the same answers.

    uv run python bench/litert_bench.py            # --calls 20 --switch-ms 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import gateway_bench  # noqa: E402
from edgeloop.gateway.hosts.litert import LiteRTRunner  # noqa: E402
from edgeloop.registry.publishing import tflite_path  # noqa: E402

Runner = Callable[[np.ndarray], np.ndarray]


def frame_at_a_time(path: Path) -> Runner:
    """The gateway's runner before chunks: one interpreter, one ``invoke`` per frame."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(inp, (1, 240, 320, 3), strict=False)
    interpreter.allocate_tensors()

    def run(images: np.ndarray) -> np.ndarray:
        distances = np.empty(len(images), np.float32)
        for i in range(len(images)):
            interpreter.set_tensor(inp, images[i:i + 1])
            interpreter.invoke()
            distances[i] = interpreter.get_tensor(out).reshape(-1)[0]
        return distances

    return run


def per_frame_ms(run: Runner, frames: np.ndarray, batch: int, calls: int) -> tuple[float, float]:
    """Wall and thread-CPU ms per frame of ``calls`` batches of ``batch`` frames."""
    run(frames[:batch])  # allocate and warm up
    wall, cpu = time.perf_counter(), time.thread_time()
    for call in range(calls):
        start = (call % 2) * 32
        run(frames[start:start + batch])
    per = calls * batch
    return ((time.perf_counter() - wall) / per * 1e3, (time.thread_time() - cpu) / per * 1e3)


class BusyPython:
    """A thread that runs Python without pause (holds the GIL unless made to drop it)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        count = 0
        while not self._stop.is_set():
            for _ in range(1000):
                count += 1

    def __enter__(self) -> BusyPython:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="batches per measurement")
    parser.add_argument("--switch-ms", type=float, default=5.0,
                        help="the interpreter's GIL switch interval (Python's default: 5)")
    args = parser.parse_args()
    sys.setswitchinterval(args.switch_ms / 1000)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        gateway_bench.export_model(Path(folder), "thesis")
        path = tflite_path(Path(folder), gateway_bench.MODEL, "1")
        frames = np.random.default_rng(0).integers(0, 256, (64, 240, 320, 3), np.uint8)
        before, chunked = frame_at_a_time(path), LiteRTRunner(path)
        same = np.array_equal(before(frames[:32]), chunked(frames[:32]))
        print(f"same answers: {same}; GIL switch interval {args.switch_ms:g} ms")
        print(f"{'beside':<14} {'batch':>5}  {'frame at a time: wall / CPU ms':>31}  "
              f"{'chunks: wall / CPU ms':>22}")
        for beside in ("nothing", "busy Python"):
            for batch in (1, 4, 8, 16, 32):
                if beside == "nothing":
                    old, new = (per_frame_ms(r, frames, batch, args.calls)
                                for r in (before, chunked))
                else:
                    with BusyPython():
                        old, new = (per_frame_ms(r, frames, batch, args.calls)
                                    for r in (before, chunked))
                print(f"{beside:<14} {batch:>5}  {old[0]:>17.3f} / {old[1]:.3f}  "
                      f"{new[0]:>15.3f} / {new[1]:.3f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
