"""On-device inference benchmark (issue 14): LiteRT on the robot against the server round trip.

Sections (``--only`` picks some):

- ``inference``: per-frame LiteRT time (JPEG decode + invoke, as the robot does it) of
  the trainer's ``thesis`` CNN exported by the registry's own TFLite converter, the float
  file and its dynamic-range quantized twin (what ``--quantized-model`` robots run), with
  one interpreter thread and with all cores; beside it the server round trip (send to
  answer) of the gateway at 10 and 100 robots x 4 fps, measured by
  ``bench/gateway_bench.py``'s rows (gateway process, embedded host, null features).
- ``agreement``: TFLite against the SavedModel on ``--frames`` frames of every world
  (scenario) of the simulator: max and mean |difference| in mm (target max <= 0.5 mm for the
  float file; the quantized twin's rows beside it, which the gateway offers robots when
  within 1 mm on the frames it served).
  The model is trained briefly on the beige world first so its answers are in the
  real range (``--saved-model`` uses a published SavedModel instead). Deterministic:
  not a timing.
- ``promotion``: time from a deployment's version change (the registry's
  WatchDeployments message) to the last of ``--robots`` robots predicting a frame with
  the new version on the device: notice on the stream, download, SHA-256 check, LiteRT
  load, swap. The gateway is the real service (in this process); the registry is a
  contract double that changes the deployment, so the registry's own promotion gate
  and alias move are not included (target <= 5 s).

Run: ``uv run python bench/device_bench.py`` (``--help`` for the sizes). Smoke run:
``uv run python bench/device_bench.py --frames 20 --inference-frames 20 --robots 2
--server-seconds 2 --server-robots 2 --train-frames 64 --epochs 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = "distance"


def _gateway_bench() -> Any:
    """``bench/gateway_bench.py`` as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gateway_bench", HERE / "gateway_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gateway_bench"] = module
    spec.loader.exec_module(module)
    return module


# --- models -----------------------------------------------------------------------------

def make_model(root: Path, version: str, args: argparse.Namespace, bias_mm: float = 0.0) -> Path:
    """A thesis CNN SavedModel at ``<root>/distance/<version>`` and its TFLite beside it.

    Trained for ``--epochs`` on ``--train-frames`` beige frames (0 epochs: random weights);
    ``bias_mm`` shifts the output so versions are told apart by their answers.
    """
    import keras
    import tensorflow as tf
    from edgeloop.edge_client.simulate import render_dataset
    from edgeloop.registry.publishing import quantized_tflite_path, tflite_path
    from edgeloop.registry.saved_models import convert_tflite
    from edgeloop.trainer.model import (
        TARGET_SCALE_MM,
        build_model,
        compile_model,
        export_saved_model,
    )

    keras.utils.set_random_seed(int(version))
    model = build_model("thesis")
    if args.epochs:
        from edgeloop.edge_client.scene.render import decode_jpeg

        data = list(render_dataset("beige", args.train_frames, seed=int(version)))
        images = np.stack([decode_jpeg(f.jpeg) for f in data])
        targets = np.array([f.true_mm for f in data], np.float32) / TARGET_SCALE_MM
        compile_model(model, 1e-3)
        model.fit(images, targets, epochs=args.epochs, batch_size=32, verbose=0)
    if bias_mm:
        dense = model.get_layer("distance")
        weights, bias = dense.get_weights()
        dense.set_weights([weights, bias + bias_mm / TARGET_SCALE_MM])
    saved = export_saved_model(model, root / MODEL / version)
    convert_tflite(saved, tflite_path(root, MODEL, version),
                   quantized_tflite_path(root, MODEL, version))
    del tf
    return saved


# --- inference time -----------------------------------------------------------------------

def bench_inference(tflite: Path, frames: list[bytes], threads: int) -> tuple[float, float]:
    """p50 and p99 ms per frame (decode + invoke) with ``threads`` interpreter threads."""
    from edgeloop.edge_client.inference.litert import LiteRTModel

    model = LiteRTModel(tflite, MODEL, "1", threads=threads)
    for jpeg in frames[:5]:
        model.predict(jpeg)  # warm-up: allocation, XNNPACK packing
    times = [model.predict(jpeg).inference_ms for jpeg in frames]
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def server_round_trips(args: argparse.Namespace, root: Path) -> list[Any]:
    """The gateway's send-to-answer rows at ``--server-robots`` x 4 fps (gateway_bench)."""
    gateway_bench = _gateway_bench()
    gb_args = argparse.Namespace(robots=args.server_robots, fps=[4.0], window=4,
                                 seconds=args.server_seconds, batch_max_size=32,
                                 batch_max_wait_ms=2.0)
    frames = gateway_bench.render_frames(64)
    return asyncio.run(gateway_bench.run_gateway_rows(gb_args, root, frames, "null"))


# --- agreement ----------------------------------------------------------------------------

def bench_agreement(saved: Path, tflite: Path, frames_per_world: int) -> list[tuple]:
    """Per world: (world, frames, max |diff| mm, mean |diff| mm, mean prediction mm)."""
    import tensorflow as tf
    from edgeloop.edge_client.inference.litert import LiteRTModel, decode_rgb
    from edgeloop.edge_client.scene.scenarios import SCENARIOS
    from edgeloop.edge_client.simulate import render_dataset

    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    lite = LiteRTModel(tflite, MODEL, "1", threads=1)
    rows = []
    for world in SCENARIOS:
        diffs, predictions = [], []
        for frame in render_dataset(world, frames_per_world, seed=5):
            rgb = decode_rgb(frame.jpeg)
            reference = float(serve(image=tf.constant(rgb[np.newaxis]))["distance_mm"][0])
            mine = lite.predict_rgb(rgb)
            diffs.append(abs(mine - reference))
            predictions.append(reference)
        rows.append((world, len(diffs), max(diffs), statistics.fmean(diffs),
                     statistics.fmean(predictions)))
    return rows


# --- promotion to the last robot predicting with the new version ------------------------

async def bench_promotion(root: Path, robots: int) -> tuple[float, list[float]]:
    """Seconds from the deployment change to the last robot's first frame on version 2."""
    import grpc
    from edgeloop.contracts.registry.v1 import deployment_pb2, device_pb2
    from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
    from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
    from edgeloop.edge_client.control.parking import Mode
    from edgeloop.edge_client.inference.device_model import DeviceModel
    from edgeloop.edge_client.inference.onboard import Inference, Onboard
    from edgeloop.edge_client.inference.store import ModelStore
    from edgeloop.edge_client.simulate import drive_session_async
    from edgeloop.gateway.app import build_app
    from edgeloop.gateway.settings import Settings
    from edgeloop.platform.server import start_server
    from edgeloop.testing import free_port
    from grpc import aio

    gateway_bench = _gateway_bench()
    repo = root / "models"

    def deployment(version: str) -> deployment_pb2.Deployment:
        return deployment_pb2.Deployment(
            name="bench", model_name=MODEL, data_group="bench", active=True,
            strategy=deployment_pb2.STRATEGY_DIRECT, resolved=[deployment_pb2.ResolvedArm(
                arm="stable", model_name=MODEL, model_version=version,
                model_path=str(repo / MODEL / version))])

    class Registry(reg_grpc.RegistryServiceServicer):
        def __init__(self) -> None:
            self.changes: asyncio.Queue[reg_pb2.WatchDeploymentsResponse] = asyncio.Queue()

        async def AuthenticateDevice(self, request, context):  # noqa: N802, ANN001, ANN201
            if request.token != "t-" + request.device_id:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "device token refused")
            return reg_pb2.AuthenticateDeviceResponse(device=device_pb2.Device(
                device_id=request.device_id, deployment="bench"), cache_ttl_seconds=300)

        async def WatchDeployments(self, request, context) -> AsyncIterator[Any]:  # noqa: N802, ANN001
            yield reg_pb2.WatchDeploymentsResponse(snapshot=True, deployments=[deployment("1")])
            while True:
                yield await self.changes.get()

    registry = Registry()
    server = aio.server()
    reg_grpc.add_RegistryServiceServicer_to_server(registry, server)
    fs = gateway_bench.NullFeatures()
    gateway_bench.fs_grpc.add_FeatureStoreServiceServicer_to_server(fs, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = Settings(listen_addr=f"127.0.0.1:{free_port()}", registry_addr=f"127.0.0.1:{port}",
                        registry_token="bench", features_addr=f"127.0.0.1:{port}",
                        model_repository=str(repo), spool_dir=str(root / "spool"))
    gateway = await start_server(build_app(settings), settings)
    first_v2: dict[int, float] = {}
    stop = asyncio.Event()
    fleet = []
    try:
        for i in range(robots):
            onboard = Onboard(Inference.DEVICE, DeviceModel(ModelStore(root / f"robot-{i}"), 1))
            predict = onboard.predict

            async def watched(jpeg: bytes, index: int = i, predict: Any = predict) -> Any:
                answer = await predict(jpeg)
                if answer is not None and answer.model_version == "2":
                    first_v2.setdefault(index, time.monotonic())
                return answer

            onboard.predict = watched  # type: ignore[method-assign]
            fleet.append((onboard, asyncio.create_task(drive_session_async(
                settings.listen_addr, f"r{i}", f"t-r{i}", "beige", runs=1, seed=i, fps=4.0,
                realtime=True, mode=Mode.MODEL, onboard=onboard,
                keep_driving=lambda: not stop.is_set()))))
        async with asyncio.timeout(300):
            while not all(o.model is not None and o.model.version == "1" for o, _ in fleet):
                await asyncio.sleep(0.05)
        changed_at = time.monotonic()
        registry.changes.put_nowait(reg_pb2.WatchDeploymentsResponse(deployments=[deployment("2")]))
        async with asyncio.timeout(300):
            while len(first_v2) < robots:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        for _, task in fleet:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 60)
        await gateway.stop(1.0)
        await server.stop(0)
    delays = sorted(t - changed_at for t in first_v2.values())
    return delays[-1], delays


# --- main ---------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=["inference", "agreement", "promotion"],
                        default=["inference", "agreement", "promotion"])
    parser.add_argument("--inference-frames", type=int, default=500)
    parser.add_argument("--frames", type=int, default=1000, help="agreement frames per world")
    parser.add_argument("--server-robots", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10, 100], help="comma-separated robot counts")
    parser.add_argument("--server-seconds", type=float, default=10.0)
    parser.add_argument("--robots", type=int, default=10, help="robots for promotion")
    parser.add_argument("--train-frames", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--saved-model", type=Path, help="a published SavedModel to compare")
    return parser.parse_args()


def main() -> None:
    """Run the chosen sections and print their tables."""
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = Path(tempfile.mkdtemp(prefix="edgeloop-device-bench-"))
    print(f"load average before: {os.getloadavg()[0]:.1f}; cores {os.cpu_count()}; "
          f"work dir {root}", flush=True)
    repo = root / "models"
    from edgeloop.registry.publishing import quantized_tflite_path, tflite_path

    if args.saved_model:
        from edgeloop.registry.saved_models import convert_tflite

        saved = args.saved_model
        tflite = convert_tflite(saved, tflite_path(repo, MODEL, "1"),
                                quantized_tflite_path(repo, MODEL, "1"))
    else:
        saved = make_model(repo, "1", args)
        tflite = tflite_path(repo, MODEL, "1")
    files = {"float": tflite, "quantized twin": quantized_tflite_path(repo, MODEL, "1")}
    if "inference" in args.only:
        from edgeloop.edge_client.simulate import render_dataset

        frames = [f.jpeg for f in render_dataset("beige", args.inference_frames, seed=11)]
        for kind, path in files.items():
            print(f"\nLiteRT per frame (decode + invoke), {len(frames)} frames, {kind}, "
                  f"{path.stat().st_size / 1024:.0f} KiB:")
            for threads in sorted({1, os.cpu_count() or 1}):
                p50, p99 = bench_inference(path, frames, threads)
                print(f"  {threads} thread(s): p50 {p50:.2f} ms  p99 {p99:.2f} ms", flush=True)
        print("\nserver round trip (gateway_bench rows: send to answer):")
        server_round_trips(args, root)  # gateway_bench prints each row as it is measured
    if "agreement" in args.only:
        for kind, path in files.items():
            print(f"\nTFLite ({kind}) vs SavedModel, {args.frames} frames per world:")
            print(f"  {'world':<14} {'frames':>6} {'max |d| mm':>11} {'mean |d| mm':>12} "
                  f"{'mean pred mm':>13}")
            for world, n, worst, mean, level in bench_agreement(saved, path, args.frames):
                print(f"  {world:<14} {n:>6} {worst:>11.4f} {mean:>12.5f} {level:>13.1f}",
                      flush=True)
    if "promotion" in args.only:
        make_model(repo, "2", argparse.Namespace(epochs=0, train_frames=0), bias_mm=5000.0)
        last, delays = asyncio.run(bench_promotion(root, args.robots))
        print(f"\npromotion -> last of {args.robots} robots predicting with the new version: "
              f"{last:.2f} s (first {delays[0]:.2f} s, median {statistics.median(delays):.2f} s)")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
