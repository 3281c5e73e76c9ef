"""Renderer benchmark: frames rendered and JPEG-encoded per second on one core at 320x240.

Run: ``uv run python bench/render_bench.py [--frames 2000] [--scenario beige]``. The process
is pinned to one CPU and OpenCV/BLAS threads are limited to one, so the number is the
single-core throughput. Both wall-clock and CPU-time rates are printed: on a busy machine
the CPU-time rate is the better estimate of what one free core does.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from edgeloop.edge_client.scene.render import SceneRenderer, SceneState  # noqa: E402
from edgeloop.edge_client.scene.scenarios import get_scenario  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--scenario", default="green-angle")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)

    scenario = get_scenario(args.scenario)
    renderer = SceneRenderer(scenario.camera, seed=0)
    rng = np.random.default_rng(0)
    states = [SceneState(float(rng.uniform(0, scenario.max_mm)),
                         float(rng.uniform(-scenario.max_yaw_deg, scenario.max_yaw_deg)),
                         float(rng.uniform(0, 5000))) for _ in range(args.frames)]
    renderer.render_jpeg(states[0], scenario.floor, scenario.look)  # textures, caches

    wall, cpu, size = time.perf_counter(), time.process_time(), 0
    for state in states:
        size += len(renderer.render_jpeg(state, scenario.floor, scenario.look))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    width, height = scenario.camera.width, scenario.camera.height
    print(f"renderer: {args.frames} frames {width}x{height} scenario {args.scenario}, "
          f"render + JPEG encode, 1 core")
    print(f"  wall  {args.frames / wall:8.1f} frames/s  ({wall * 1000 / args.frames:.2f} ms/frame)")
    print(f"  cpu   {args.frames / cpu:8.1f} frames/s  ({cpu * 1000 / args.frames:.2f} ms/frame)")
    print(f"  mean JPEG size {size / args.frames / 1024:.1f} KiB   target >= 200 frames/s")


if __name__ == "__main__":
    main()
