"""JPEG decode benchmark: OpenCV against edgeloop.platform.jpeg (TurboJPEG), same pixels.

Decodes the edge client's rendered 320x240 frames (the five worlds) on one thread, as the
gateway does (full size, RGB) and as the features service does (half size, BGR), with
OpenCV's ``imdecode`` (plus the channel swap to RGB) and with :func:`edgeloop.platform.jpeg.decode`,
and prints CPU ms per frame. It checks that both give the same pixels before timing them.

    uv run python bench/jpeg_bench.py            # --frames 500 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import cv2
import numpy as np
from edgeloop.edge_client.simulate import render_dataset
from edgeloop.platform.jpeg import decode

WORLDS = ("beige", "beige-distant", "green", "green-angle", "red")


def opencv_rgb(jpeg: bytes) -> np.ndarray:
    """The gateway's decode before edgeloop.platform.jpeg."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def opencv_half_bgr(jpeg: bytes) -> np.ndarray:
    """The features service's decode before edgeloop.platform.jpeg."""
    flags = cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)


CASES: dict[str, tuple[Callable[[bytes], np.ndarray], Callable[[bytes], np.ndarray]]] = {
    "full size, RGB (gateway, trainer, robot)": (opencv_rgb, lambda j: decode(j, "RGB")),
    "half size, BGR (features statistics)": (
        opencv_half_bgr, lambda j: decode(j, "BGR", reduction=2, apply_orientation=False)),
}


def cpu_ms(step: Callable[[bytes], np.ndarray], jpegs: list[bytes], rounds: int) -> float:
    """Median over ``rounds`` of the CPU ms per frame of ``step``."""
    costs = []
    for _ in range(rounds):
        began = time.process_time()
        for jpeg in jpegs:
            step(jpeg)
        costs.append((time.process_time() - began) / len(jpegs) * 1e3)
    return sorted(costs)[len(costs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=500, help="frames, spread over 5 worlds")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    jpegs = [f.jpeg for i, world in enumerate(WORLDS)
             for f in render_dataset(world, args.frames // len(WORLDS), seed=i + 1)]
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{len(jpegs)} frames, mean {np.mean([len(j) for j in jpegs]) / 1024:.1f} KiB")
    for name, (before, after) in CASES.items():
        same = all(np.array_equal(before(j), after(j)) for j in jpegs)
        old, new = cpu_ms(before, jpegs, args.rounds), cpu_ms(after, jpegs, args.rounds)
        print(f"{name}: OpenCV {old:.3f} ms, edgeloop.platform.jpeg {new:.3f} ms per frame "
              f"({old / new:.2f}x), same pixels: {same}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
