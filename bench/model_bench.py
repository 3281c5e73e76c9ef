"""The limit: predictions/s of the model itself on this machine, and what the hosts keep.

Builds the trainer's thesis-sized CNN (three conv/pool blocks at 75x100, resize and
rescale inside the model), exports it with the serving signature, then measures on
320x240 RGB frames:

1. ``direct``: the SavedModel's ``serving_default`` called in a loop in-process, at
   batch 1, 8 and 32 (the limit: nothing but TF);
2. ``embedded``: ``EmbeddedHost.predict`` at batch 1 from one caller (what the executor
   hop and the asyncio loop cost);
3. ``batcher``: ``MicroBatcher.predict_one`` from N concurrent callers, each as fast as
   it can (throughput), and paced at a fixed rate per caller (latency at a given load,
   e.g. 100 robots x 4 fps).

Run: ``uv run python bench/model_bench.py`` (``--help`` for the knobs). Output is a table
on stdout; the figures recorded in ``bench/README.md`` come from it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Result:
    """One measured configuration."""

    name: str
    predictions: int
    seconds: float
    latencies_s: list[float]
    cpu_seconds: float = 0.0
    """CPU time of the whole process (all threads) during the run."""
    note: str = ""

    def row(self) -> str:
        lat = np.array(self.latencies_s) * 1000
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (0, 0)
        rate = self.predictions / self.seconds
        per_cpu = self.predictions / self.cpu_seconds if self.cpu_seconds else 0.0
        return (f"{self.name:<48} {rate:>7.0f} {per_cpu:>9.0f} {p50:>8.2f} {p99:>8.2f}  "
                f"{self.note}")


# pred/CPU-s: predictions per second of CPU time used by this process (all threads). On
# a shared machine wall-clock rates say how much CPU the bench was given; this does not.
HEADER = (f"{'configuration':<48} {'pred/s':>7} {'pred/CPU-s':>9} {'p50 ms':>8} {'p99 ms':>8}"
          "  notes")


def export_thesis_model(folder: Path, architecture: str) -> Path:
    """The trainer's model family, exported with its own serving-signature exporter."""
    from edgeloop.trainer.model import build_model, export_saved_model

    return export_saved_model(build_model(architecture), folder / "1")


def frames(count: int, seed: int = 0) -> np.ndarray:
    """``count`` random 320x240 RGB frames (what the robot's rear camera sends)."""
    return np.random.default_rng(seed).integers(0, 256, (count, 240, 320, 3), dtype=np.uint8)


def run_for(seconds: float, step: Callable[[], int]) -> tuple[int, float, list[float]]:
    """Call ``step`` (returns predictions made) until ``seconds`` pass; per-call latencies."""
    done, latencies = 0, []
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        done += step()
        latencies.append(time.perf_counter() - now)
    return done, time.perf_counter() - start, latencies


def bench_direct(path: Path, batch_sizes: list[int], seconds: float) -> list[Result]:
    """The limit: ``serving_default`` in a loop, no host in between."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    results = []
    for batch in batch_sizes:
        images = tf.constant(frames(batch))
        serve(image=images)  # warm-up: the first call initialises the kernels
        cpu = time.process_time()
        done, took, lat = run_for(seconds, lambda b=batch, i=images: (
            serve(image=i)["distance_mm"].numpy(), b)[1])
        results.append(Result(f"direct serving_default, batch {batch}", done, took, lat,
                              time.process_time() - cpu, "latency per call"))
    return results


async def bench_embedded(host, key, seconds: float) -> Result:  # noqa: ANN001
    """One caller, batch 1, through the EmbeddedHost (executor hop included)."""
    image = frames(1)
    done, lat = 0, []
    cpu, start = time.process_time(), time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        await host.predict(key, image)
        done += 1
        lat.append(time.perf_counter() - now)
    return Result("EmbeddedHost.predict batch 1, 1 caller", done, time.perf_counter() - start,
                  lat, time.process_time() - cpu)


async def bench_batcher(host, key, callers: int, max_batch: int, args: argparse.Namespace,  # noqa: ANN001
                        fps: float = 0.0) -> Result:
    """``callers`` concurrent streams through a MicroBatcher, flat out or at ``fps`` each."""
    from edgeloop.gateway.hosts.batching import BatchingConfig, MicroBatcher

    batcher = MicroBatcher(host, BatchingConfig(
        max_batch_size=max_batch, max_wait_ms=args.max_wait_ms,
        max_concurrent_batches=args.max_concurrent, dispatch_when_idle=args.when_idle))
    images = frames(min(callers, 32))
    latencies: list[float] = []
    waits: list[float] = []
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + args.seconds

    async def caller(n: int) -> None:
        period = 1.0 / fps if fps else 0.0
        next_at = loop.time() + (n / callers) * period  # spread the robots over one period
        while loop.time() < stop_at:
            if period:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at += period
            started = time.perf_counter()
            result = await batcher.predict_batched(key, images[n % len(images)])
            latencies.append(time.perf_counter() - started)
            waits.append(result.batch_wait_s)

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(callers)))
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = batcher.stats()
    pace = f"{fps:g} fps each" if fps else "flat out"
    note = (f"mean batch {stats.mean_batch_size:.1f}, mean batch wait "
            f"{np.mean(waits) * 1000:.2f} ms")
    return Result(f"batcher {callers} callers {pace}, max {max_batch}/{args.max_wait_ms:g}ms",
                  stats.images, took, latencies, cpu, note)


async def bench_hosts(path: Path, args: argparse.Namespace) -> list[Result]:
    """The EmbeddedHost alone, then behind a MicroBatcher at each configuration."""
    from edgeloop.gateway.hosts import ModelKey
    from edgeloop.gateway.hosts.embedded import EmbeddedConfig, EmbeddedHost

    host = EmbeddedHost(EmbeddedConfig(predict_threads=args.predict_threads,
                                       intra_op_threads=args.intra_op_threads,
                                       inter_op_threads=args.inter_op_threads))
    key = ModelKey("bench", "1", path=str(path))
    await host.ensure_loaded(key)
    results = [await bench_embedded(host, key, args.seconds)]
    for callers in args.callers:
        for max_batch in args.max_batch:
            results.append(await bench_batcher(host, key, callers, max_batch, args))
    for callers, fps in args.paced:
        results.append(await bench_batcher(host, key, callers, max(args.max_batch), args, fps))
    await host.close()
    return results


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _paced(text: str) -> list[tuple[int, float]]:
    return [(int(c), float(f)) for c, f in (pair.split("x") for pair in text.split(",") if pair)]


def parse_args() -> argparse.Namespace:
    """The command line."""
    from edgeloop.gateway.hosts.batching import BatchingConfig
    from edgeloop.gateway.hosts.embedded import EmbeddedConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="thesis", help="trainer model family member")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 8, 32], help="direct batches")
    parser.add_argument("--callers", type=_ints, default=[1, 10, 100], help="concurrent callers")
    parser.add_argument("--max-batch", type=_ints, default=[8, 32], help="batcher max sizes")
    parser.add_argument("--max-wait-ms", type=float, default=BatchingConfig.max_wait_ms,
                        help="batcher max wait")
    parser.add_argument("--paced", type=_paced, default=[(10, 4.0), (100, 4.0)],
                        help="paced runs, CALLERSxFPS,... (default 10x4,100x4)")
    parser.add_argument("--max-concurrent", type=int,
                        default=BatchingConfig.max_concurrent_batches,
                        help="batches in the model at once")
    parser.add_argument("--timer-only", dest="when_idle", action="store_false",
                        default=BatchingConfig.dispatch_when_idle,
                        help="batcher waits for its timer even when the model is idle")
    # Defaults: the hosts' own defaults, so the bench measures what the gateway ships.
    parser.add_argument("--predict-threads", type=int, default=EmbeddedConfig.predict_threads)
    parser.add_argument("--intra-op-threads", type=int, default=EmbeddedConfig.intra_op_threads)
    parser.add_argument("--inter-op-threads", type=int, default=EmbeddedConfig.inter_op_threads)
    return parser.parse_args()


def main() -> None:
    """Export the model, run every measurement, print the table."""
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    from edgeloop.gateway.hosts.embedded import configure_tf_threads

    # Before TF runs its first op: the same pools the gateway's EmbeddedHost uses.
    configure_tf_threads(args.intra_op_threads, args.inter_op_threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = export_thesis_model(Path(tmp), args.architecture)
        results = bench_direct(path, args.batch_sizes, args.seconds)
        results += asyncio.run(bench_hosts(path, args))
    print(f"model: trainer '{args.architecture}' CNN, 320x240 RGB frames in, "
          f"TF threads intra={args.intra_op_threads} inter={args.inter_op_threads}, "
          f"predict threads={args.predict_threads}, batches at once={args.max_concurrent}, "
          f"dispatch when idle={args.when_idle}")
    # Other work on the machine skews every figure: say how busy it was.
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
          f"{os.cpu_count()} cores")
    print(HEADER)
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
