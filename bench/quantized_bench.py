"""The gateway's quantized TFLite twin against the float file: CPU a frame, and answers.

The registry writes every version as ``<version>.tflite`` (float; robots run it) and
``<version>.quantized.tflite`` (dynamic-range quantized; the gateway runs it when it agrees
with the SavedModel within 1 mm). This bench measures both:

- **speed**: the trainer's ``thesis`` CNN exported and converted as the registry does, run by
  LiteRT on one thread, CPU ms a frame at batch 1 and 8 (the gateway's chunk size);
- **answers**, when a demo's state folder is there (``./run demo`` leaves ``.edgeloop/``):
  every published version of the demo's model, float against quantized on the frames of the
  largest snapshot the demo trained on (frames as the trainer pre-resized them, rounded to
  uint8, so the model's own resize is the identity): |difference| mean, p99 and max, and the
  error against the range sensor per world of the snapshot, float / quantized.

    uv run python bench/quantized_bench.py                  # --state .edgeloop --calls 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import gateway_bench  # noqa: E402
from edgeloop.gateway.hosts.litert import LiteRTRunner  # noqa: E402
from edgeloop.registry.publishing import quantized_tflite_path, tflite_path  # noqa: E402
from edgeloop.registry.saved_models import convert_tflite  # noqa: E402
from edgeloop.trainer.snapshot import mapped_member  # noqa: E402


def cpu_ms_per_frame(path: Path, batch: int, calls: int) -> float:
    """Thread CPU ms a frame of ``calls`` batches of ``batch`` random 320x240 frames."""
    runner = LiteRTRunner(path)
    frames = np.random.default_rng(0).integers(0, 256, (batch, 240, 320, 3), dtype=np.uint8)
    for _ in range(20):
        runner(frames)
    started = time.thread_time()
    for _ in range(calls):
        runner(frames)
    return (time.thread_time() - started) / calls / batch * 1000


def speed(calls: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder)
        gateway_bench.export_model(repo, "thesis")
        files = {"float": tflite_path(repo, gateway_bench.MODEL, "1"),
                 "quantized": quantized_tflite_path(repo, gateway_bench.MODEL, "1")}
        print("| file | KiB | batch 1 CPU ms/frame | batch 8 CPU ms/frame |")
        print("|---|---|---|---|")
        for name, path in files.items():
            one, eight = (cpu_ms_per_frame(path, b, calls // b) for b in (1, 8))
            print(f"| {name} | {path.stat().st_size // 1024:,} | {one:.3f} | {eight:.3f} |",
                  flush=True)


def largest_snapshot(state: Path) -> Path | None:
    archives = list(state.glob("objects/trainer/sweeps/*/arrays.npz"))
    return max(archives, key=lambda p: p.stat().st_size) if archives else None


def answers(state: Path) -> None:
    archive = largest_snapshot(state)
    models = sorted((state / "models").glob("*/1.tflite"))
    if archive is None or not models:
        print(f"no demo in {state} (no snapshot or no published model): answers not compared")
        return
    with np.load(archive) as data:
        labels, worlds = data["labels"], data["world"]
    frames = np.clip(np.rint(np.asarray(mapped_member(archive, "images"))), 0, 255)
    frames = frames.astype(np.uint8)
    model = models[0].parent
    print(f"\n{len(frames):,} frames of {archive.parent.name} ({len(np.unique(worlds))} worlds), "
          f"model {model.name}")
    print("| version | |difference| mean / p99 / max mm | error vs sensor float / quantized, "
          "per world (mm) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for float_file in sorted(model.glob("*.tflite"), key=_version_number):
            if float_file.name.endswith(".quantized.tflite"):
                continue
            version = float_file.stem
            quantized = model / f"{version}.quantized.tflite"
            if not quantized.exists():  # a demo from before the twin: convert it here
                quantized = Path(folder) / f"{version}.quantized.tflite"
                convert_tflite(model / version, Path(folder) / f"{version}.tflite", quantized)
            exact, twin = LiteRTRunner(float_file)(frames), LiteRTRunner(quantized)(frames)
            gap = np.abs(exact.astype(np.float64) - twin)
            per_world = ", ".join(
                f"{w}: {np.mean(np.abs(exact[worlds == w] - labels[worlds == w])):.2f} / "
                f"{np.mean(np.abs(twin[worlds == w] - labels[worlds == w])):.2f}"
                for w in np.unique(worlds))
            print(f"| {version} | {gap.mean():.3f} / {np.percentile(gap, 99):.3f} / "
                  f"{gap.max():.3f} | {per_world} |", flush=True)


def _version_number(path: Path) -> int:
    head = path.name.split(".")[0]
    return int(head) if head.isdigit() else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, default=Path(".edgeloop"),
                        help="a demo's state folder, for the answers (default .edgeloop)")
    parser.add_argument("--calls", type=int, default=2000,
                        help="frames timed per file and batch size (default 2000)")
    args = parser.parse_args()
    speed(args.calls)
    answers(args.state)


if __name__ == "__main__":
    main()
