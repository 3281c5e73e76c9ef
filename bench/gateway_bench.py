"""Gateway benchmark: simulated robots streaming to a gateway process, beside the thesis transport.

Measures, for N concurrent robots (default 10 and 100) at 4 fps each and at full speed:
frames/s answered, frame→prediction latency p50/p99 (client side, send to answer), the
gateway process's CPU use and peak RSS. Beside it, in the same run:

- ``limit``: the same SavedModel called in-process in a loop (batch 1 and batch 32), and
  its TFLite file (converted by the registry's own converter) in LiteRT, one thread,
  frame by frame;
- ``thesis``: one HTTP POST per frame to a Flask server doing the same work (decode the
  JPEG with OpenCV, predict with the same SavedModel), N robots as N client threads.

The gateway runs as its own process (``python -m edgeloop.gateway``) with micro-batching,
exactly as deployed, on the embedded host (models in the gateway; ``--runtime`` picks
TensorFlow, LiteRT or both: the TFLite file is published beside the SavedModel as the
registry publishes it, and LiteRT rows start once the gateway has logged the switch)
and/or, with
``--model-host rayserve|both``, on the Ray Serve model host: a Ray head node process, the
Serve application (``python -m edgeloop.gateway.hosts.rayserve``, ``--rayserve-replicas``)
and the gateway's TF Serving client calling Serve's gRPC proxy. For Ray Serve rows the
gateway's CPU column leaves out the replicas' (they run in Ray's processes). Its registry
is a contract double in this
process (one deployment, N devices; it only answers AuthenticateDevice and
WatchDeployments). Features is either a null sink in this process that accepts every
Ingest (``--features null``, the default) or the real features service on a private
PostgreSQL cluster (``--features real``); they are reported separately.

The model is the trainer's ``thesis`` CNN (as in ``bench/model_bench.py``); frames come
from the edge client's scene renderer (320x240 JPEGs). The robots' load generator runs
in this process and shares the machine's two cores with the gateway, as a real test
client would; CPU-seconds per frame of the gateway process are reported so results on
a busy machine can be read.

Run: ``uv run python bench/gateway_bench.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import psutil
from edgeloop.compose.stack import bytecode
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fs_grpc
from edgeloop.contracts.registry.v1 import deployment_pb2, device_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.testing import free_port, wait_serving
from grpc import aio

REGISTRY_TOKEN = "bench-registry-token"
MODEL = "distance"
WARMUP_S = 1.5


@dataclass
class Result:
    """One measured configuration."""

    name: str
    answered: int
    seconds: float
    latencies_ms: list[float]
    errors: int = 0
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    note: str = ""

    def row(self) -> str:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        rate = self.answered / self.seconds if self.seconds else 0.0
        cpu_ms = 1000 * self.cpu_s / self.answered if self.answered and self.cpu_s else 0.0
        return (f"{self.name:<44} {rate:>9.0f} {np.percentile(lat, 50):>8.1f} "
                f"{np.percentile(lat, 99):>8.1f} {self.errors:>6} {cpu_ms:>8.2f} "
                f"{self.rss_mb:>7.0f}  {self.note}")


HEADER = (f"{'configuration':<44} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
          f"{'cpu ms/f':>8} {'rss MB':>7}  notes")


# --- model and frames -----------------------------------------------------------------------

def export_model(repo: Path, architecture: str) -> Path:
    """The trainer's model family member, exported with the trainer's exporter as version 1,
    and its TFLite files beside it (float and quantized), converted and named as the
    registry publishes them."""
    from edgeloop.registry.publishing import quantized_tflite_path, tflite_path
    from edgeloop.registry.saved_models import convert_tflite
    from edgeloop.trainer.model import build_model, export_saved_model

    saved_model = export_saved_model(build_model(architecture), repo / MODEL / "1")
    convert_tflite(saved_model, tflite_path(repo, MODEL, "1"),
                   quantized_tflite_path(repo, MODEL, "1"))
    return saved_model


def render_frames(count: int) -> list[tuple[bytes, float | None]]:
    """JPEG frames with sensor readings from the edge client's renderer (synthetic fallback)."""
    try:
        from edgeloop.edge_client.simulate import render_dataset

        return [(f.jpeg, f.sensor_mm) for f in render_dataset("beige", count, seed=11)]
    except ImportError:
        import cv2

        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (count, 240, 320, 3), dtype=np.uint8)
        return [(cv2.imencode(".jpg", image)[1].tobytes(), 500.0) for image in images]


# --- registry contract double and null features sink ------------------------------------

class RegistryDouble(reg_grpc.RegistryServiceServicer):
    """Contract double of RegistryService: every device ``bench-<i>`` with token ``t-<i>``."""

    def __init__(self, repo: Path) -> None:
        self.deployment = deployment_pb2.Deployment(
            name="bench", model_name=MODEL, data_group="bench", active=True,
            strategy=deployment_pb2.STRATEGY_DIRECT,
            resolved=[deployment_pb2.ResolvedArm(arm="stable", model_name=MODEL, model_version="1",
                                                 model_path=str(repo / MODEL / "1"))])

    async def AuthenticateDevice(self, request: reg_pb2.AuthenticateDeviceRequest,
                                 context: aio.ServicerContext
                                 ) -> reg_pb2.AuthenticateDeviceResponse:
        if request.token != "t-" + request.device_id.removeprefix("bench-"):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "device token refused")
        return reg_pb2.AuthenticateDeviceResponse(
            device=device_pb2.Device(device_id=request.device_id, deployment="bench"),
            cache_ttl_seconds=300)

    async def WatchDeployments(self, request: reg_pb2.WatchDeploymentsRequest,
                               context: aio.ServicerContext
                               ) -> AsyncIterator[reg_pb2.WatchDeploymentsResponse]:
        yield reg_pb2.WatchDeploymentsResponse(snapshot=True, deployments=[self.deployment])
        await asyncio.Event().wait()  # no changes during a benchmark


class NullFeatures(fs_grpc.FeatureStoreServiceServicer):
    """A features sink that accepts and counts every observation (no statistics, no storage),
    and takes the gateway's samples."""

    def __init__(self) -> None:
        self.observations = 0

    async def Ingest(self, request_iterator: AsyncIterator[fs_pb2.IngestRequest],
                     context: aio.ServicerContext) -> fs_pb2.IngestResponse:
        stored = 0
        async for request in request_iterator:
            stored += len(request.observations)
        self.observations += stored
        return fs_pb2.IngestResponse(stored=stored)

    async def RecordGatewaySamples(self, request: fs_pb2.RecordGatewaySamplesRequest,
                                   context: aio.ServicerContext
                                   ) -> fs_pb2.RecordGatewaySamplesResponse:
        # the gateway's samples every 10 s: taken, so its log stays free of refusals
        return fs_pb2.RecordGatewaySamplesResponse(stored=len(request.samples))


# --- processes --------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def gateway_process(env: dict[str, str], log: Path) -> AsyncIterator[psutil.Process]:
    """``python -m edgeloop.gateway`` until the block ends."""
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "edgeloop.gateway"],
                                   env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        # In a thread: the registry double in this event loop must answer meanwhile.
        await asyncio.to_thread(wait_serving, env["EDGELOOP_LISTEN_ADDR"], "", 900)
        yield psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(60)


@contextlib.contextmanager
def real_features(root: Path) -> Iterator[str]:
    """The real features service on a private PostgreSQL cluster; yields its address."""
    from edgeloop.platform.pgcluster import PostgresCluster, choose_data_dir

    # As root the cluster runs as the postgres user, who cannot enter a private temporary
    # folder: choose_data_dir moves the data folder where that user can reach it.
    cluster = PostgresCluster(data_dir=choose_data_dir(root / "pg"), port=free_port(),
                              durable=False)
    cluster.start()
    address = f"127.0.0.1:{free_port()}"
    env = {"EDGELOOP_LISTEN_ADDR": address, "EDGELOOP_OBJECT_STORE_DIR": str(root / "objects"),
           "EDGELOOP_DATABASE_URL": cluster.ensure_database("bench"),
           "EDGELOOP_LOG_LEVEL": "WARNING"}
    with (root / "features.log").open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "edgeloop.features"],
                                   env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_serving(address, timeout_s=600)
        yield address
    finally:
        process.terminate()
        process.wait(60)
        cluster.stop()
        if not cluster.data_dir.is_relative_to(root):
            shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)


# --- robots -----------------------------------------------------------------------------

@dataclass
class Robot:
    """One simulated robot's stream and what it measured."""

    index: int
    frames: list[tuple[bytes, float | None]]
    fps: float
    window: int
    phase: float | None = None
    """Where in its frame period the robot starts, 0-1 (None: spread by index, 25 slots)."""
    sent_at: dict[int, float] = field(default_factory=dict)
    latencies_ms: list[tuple[float, float]] = field(default_factory=list)
    errors: int = 0

    async def run(self, stub: gw_grpc.EdgeGatewayServiceStub, until: float) -> None:
        device = f"bench-{self.index}"
        call = stub.Stream(metadata=(("authorization", f"Bearer t-{self.index}"),
                                     ("x-device-id", device)))
        await call.write(gw_pb2.StreamRequest(hello=edge_pb2.Hello(
            device_id=device, session_id=uuid.uuid4().hex, client_version="bench")))
        await call.read()  # Welcome
        slots = asyncio.Semaphore(self.window)
        reader = asyncio.create_task(self._read(call, slots))
        await self._send(call, slots, until)
        await call.done_writing()
        await reader

    async def _send(self, call: aio.StreamStreamCall, slots: asyncio.Semaphore,
                    until: float) -> None:
        phase = (self.index % 25) / 25 if self.phase is None else self.phase
        seq, next_at = 0, time.perf_counter() + phase / max(self.fps, 1)
        while (now := time.perf_counter()) < until:
            if self.fps:
                await asyncio.sleep(max(0.0, next_at - now))
                next_at += 1 / self.fps
            await slots.acquire()
            seq += 1
            jpeg, sensor = self.frames[(seq + self.index) % len(self.frames)]
            frame = edge_pb2.Frame(seq=seq, jpeg=jpeg)
            frame.captured_at.GetCurrentTime()  # as every edge client stamps its frames
            if sensor is not None:
                frame.sensor_mm = sensor
            self.sent_at[seq] = time.perf_counter()
            await call.write(gw_pb2.StreamRequest(frame=frame))

    async def _read(self, call: aio.StreamStreamCall, slots: asyncio.Semaphore) -> None:
        # read(), not ``async for``: grpc.aio refuses mixing the two on one call.
        while (answer := await call.read()) != aio.EOF:
            now = time.perf_counter()
            seq = answer.prediction.seq if answer.HasField("prediction") else answer.error.seq
            if answer.HasField("error"):
                self.errors += 1
            self.latencies_ms.append((now, (now - self.sent_at.pop(seq)) * 1000))
            slots.release()


async def drive_robots(address: str, frames: list, robots: int, fps: float, seconds: float,
                       window: int, on_measuring: Callable[[], None] = lambda: None,
                       ) -> tuple[int, float, list[float], int]:
    """N robots for ``seconds`` (after a warm-up); answers, window, latencies, errors.
    ``on_measuring`` is called when the warm-up ends and the measured window begins."""
    async with aio.insecure_channel(address) as channel:
        stub = gw_grpc.EdgeGatewayServiceStub(channel)
        start = time.perf_counter()
        until = start + WARMUP_S + seconds
        fleet = [Robot(i, frames, fps, window) for i in range(robots)]
        asyncio.get_running_loop().call_later(WARMUP_S, on_measuring)
        await asyncio.gather(*(robot.run(stub, until) for robot in fleet))
    measured_from = start + WARMUP_S
    samples = [(t, ms) for robot in fleet for t, ms in robot.latencies_ms if t >= measured_from]
    ended = max((t for t, _ in samples), default=until)
    return len(samples), ended - measured_from, [ms for _, ms in samples], \
        sum(robot.errors for robot in fleet)


async def bench_gateway(args: argparse.Namespace, frames: list, process: psutil.Process,
                        address: str, label: str) -> list[Result]:
    results = []
    for robots in args.robots:
        for fps in args.fps:
            cpu_at = [sum(process.cpu_times()[:2])]  # replaced when the measured window starts

            def measuring(cpu_at: list[float] = cpu_at) -> None:
                cpu_at[0] = sum(process.cpu_times()[:2])

            answered, took, lat, errors = await drive_robots(address, frames, robots, fps,
                                                             args.seconds, args.window, measuring)
            # CPU from the end of the warm-up to the last answer; the frames still in flight
            # when sending stopped are answered inside it, so the ratio is per answered frame.
            cpu = sum(process.cpu_times()[:2]) - cpu_at[0]
            rate = f"{fps:g} fps" if fps else f"full speed (window {args.window})"
            results.append(Result(f"gateway {label}, {robots} robots x {rate}", answered, took,
                                  lat, errors, cpu,
                                  process.memory_info().rss / 2**20, ""))
            print(results[-1].row(), flush=True)
    return results


# --- the thesis transport: one HTTP POST per frame to Flask ------------------------------

FLASK_APP = """
import sys, cv2, numpy as np, tensorflow as tf
from flask import Flask, request, jsonify
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
app = Flask("thesis")

@app.post("/predict")
def predict():
    bgr = cv2.imdecode(np.frombuffer(request.get_data(), np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return jsonify(error="invalid jpeg"), 400
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[np.newaxis]
    return jsonify(distance_mm=float(serve(image=tf.constant(rgb))["distance_mm"].numpy()[0]))

@app.get("/health")
def health():
    return "ok"

app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
"""


@contextlib.contextmanager
def flask_server(model: Path, root: Path) -> Iterator[tuple[str, psutil.Process]]:
    import requests

    port = free_port()
    with (root / "flask.log").open("ab") as out:
        process = subprocess.Popen([sys.executable, "-c", FLASK_APP, str(model), str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/health", timeout=1).ok:
                break
        time.sleep(0.5)
    try:
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(60)


def _http_robot(url: str, frames: list, fps: float, until: float, out: list, index: int) -> None:
    import requests

    session = requests.Session()
    next_at, seq = time.perf_counter() + (index % 25) / 25 / max(fps, 1), 0
    while (now := time.perf_counter()) < until:
        if fps:
            time.sleep(max(0.0, next_at - now))
            next_at += 1 / fps
        seq += 1
        sent = time.perf_counter()
        reply = session.post(f"{url}/predict", data=frames[(seq + index) % len(frames)][0],
                             headers={"Content-Type": "image/jpeg"}, timeout=30)
        done = time.perf_counter()
        out.append((done, (done - sent) * 1000, reply.status_code != 200))


def bench_thesis(args: argparse.Namespace, frames: list, url: str,
                 process: psutil.Process) -> list[Result]:
    results = []
    for robots in args.robots:
        for fps in args.fps:
            out: list[tuple[float, float, bool]] = []
            start = time.perf_counter()
            until = start + WARMUP_S + args.seconds
            cpu_before = sum(process.cpu_times()[:2])
            threads = [threading.Thread(target=_http_robot, args=(url, frames, fps, until, out, i))
                       for i in range(robots)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            samples = [s for s in out if s[0] >= start + WARMUP_S]
            took = max((s[0] for s in samples), default=until) - (start + WARMUP_S)
            rate = f"{fps:g} fps" if fps else "full speed"
            results.append(Result(f"thesis HTTP/Flask, {robots} robots x {rate}", len(samples),
                                  took, [s[1] for s in samples], sum(s[2] for s in samples), cpu,
                                  process.memory_info().rss / 2**20, "one POST per frame"))
            print(results[-1].row(), flush=True)
    return results


# --- the limit ----------------------------------------------------------------------------

def bench_limit(model: Path, frames: list, seconds: float) -> list[Result]:
    """The same model called in-process in a loop on decoded frames (no transport)."""
    import cv2
    import tensorflow as tf

    serve = tf.saved_model.load(str(model)).signatures["serving_default"]
    rgb = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR),
                                 cv2.COLOR_BGR2RGB) for j, _ in frames[:32]])
    results = []
    for batch in (1, 32):
        images = tf.constant(rgb[:batch])
        serve(image=images)
        done, latencies, cpu = 0, [], time.process_time()
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < seconds:
            serve(image=images)["distance_mm"].numpy()
            latencies.append((time.perf_counter() - now) * 1000)
            done += batch
        results.append(Result(f"limit: model in-process, batch {batch}", done,
                              time.perf_counter() - start, latencies,
                              cpu_s=time.process_time() - cpu, note="latency per call"))
        print(results[-1].row(), flush=True)
    results.append(_limit_litert(model, rgb[:1], seconds))
    print(results[-1].row(), flush=True)
    return results


def _limit_litert(model: Path, image: np.ndarray, seconds: float) -> Result:
    """The version's TFLite file through the gateway's own LiteRT runner, frame by frame."""
    from edgeloop.gateway.hosts.litert import LiteRTRunner, tflite_beside

    runner = LiteRTRunner(tflite_beside(model, model.name))
    runner(image)
    done, latencies, cpu = 0, [], time.process_time()
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        runner(image)
        latencies.append((time.perf_counter() - now) * 1000)
        done += 1
    return Result("limit: LiteRT in-process, 1 thread, batch 1", done,
                  time.perf_counter() - start, latencies, cpu_s=time.process_time() - cpu,
                  note="latency per call")


# --- main ---------------------------------------------------------------------------------

def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robots", type=_ints, default=[10, 100], help="concurrent robots")
    parser.add_argument("--fps", type=_floats, default=[4.0, 0.0],
                        help="frames/s per robot; 0 = full speed")
    parser.add_argument("--window", type=int, default=4,
                        help="frames in flight per robot at full speed")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--features", choices=["null", "real", "both"], default="null")
    parser.add_argument("--architecture", default="thesis", help="trainer model family member")
    parser.add_argument("--batch-max-size", type=int, default=32)
    parser.add_argument("--batch-max-wait-ms", type=float, default=2.0)
    parser.add_argument("--model-host", choices=["embedded", "rayserve", "both"],
                        default="embedded", help="the gateway's model host(s) to measure")
    parser.add_argument("--rayserve-replicas", type=int, default=2)
    parser.add_argument("--runtime", choices=["tensorflow", "litert", "both"], default="both",
                        help="embedded host runtime (EDGELOOP_MODEL_RUNTIME): tensorflow, "
                        "litert (auto with the TFLite file published) or both")
    parser.add_argument("--skip-thesis", action="store_true")
    parser.add_argument("--skip-limit", action="store_true")
    return parser.parse_args()


def gateway_env(root: Path, registry: str, features: str, args: argparse.Namespace,
                label: str, serve_addr: str = "", runtime: str = "tensorflow"
                ) -> dict[str, str]:
    host = {"EDGELOOP_MODEL_HOST": "tfserving", "EDGELOOP_TFSERVING_ADDR": serve_addr,
            "EDGELOOP_TFSERVING_DEADLINE_S": "5"} if serve_addr else {}
    return {**host, "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
            "EDGELOOP_REGISTRY_ADDR": registry,
            "EDGELOOP_REGISTRY_TOKEN": REGISTRY_TOKEN, "EDGELOOP_FEATURES_ADDR": features,
            "EDGELOOP_MODEL_REPOSITORY": str(root / "models"),
            "EDGELOOP_SPOOL_DIR": str(root / f"spool-{label}-{runtime}"),
            # INFO for the runtime switch's log line; nothing is logged per frame
            "EDGELOOP_LOG_LEVEL": "INFO",
            "EDGELOOP_MODEL_RUNTIME": "auto" if runtime == "litert" else "tensorflow",
            "EDGELOOP_BATCH_MAX_SIZE": str(args.batch_max_size),
            "EDGELOOP_BATCH_MAX_WAIT_MS": str(args.batch_max_wait_ms),
            "TF_CPP_MIN_LOG_LEVEL": "2"}


@contextlib.contextmanager
def ray_serve_host(root: Path, replicas: int) -> Iterator[str]:
    """A Ray head node and the Serve application over ``root/models``; yields its gRPC proxy."""
    from edgeloop.compose.stack import health
    from edgeloop.testing import RayNodes
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name=MODEL, model_platform="tensorflow",
                                                base_path=str(root / "models" / MODEL))
    entry.model_version_policy.specific.versions.append(1)
    (root / "models" / "models.config").write_text(text_format.MessageToString(config))
    nodes = RayNodes(num_cpus=os.cpu_count() or 2).start()
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, **nodes.env(), "EDGELOOP_RAY_ADDRESS": nodes.address,
           "EDGELOOP_MODEL_REPOSITORY": str(root / "models"),
           "EDGELOOP_RAYSERVE_GRPC_PORT": address.rsplit(":", 1)[1],
           "EDGELOOP_RAYSERVE_HTTP_PORT": str(free_port()),
           "EDGELOOP_RAYSERVE_REPLICAS": str(replicas), "EDGELOOP_LOG_LEVEL": "WARNING"}
    with (root / "rayserve.log").open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "edgeloop.gateway.hosts.rayserve"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        status = health.wait_until(lambda: health.serve_status(address), 1200,
                                   lambda: process.poll() is not None)
        if status != "SERVING":
            raise RuntimeError(f"Ray Serve did not start ({status}); see {root}/rayserve.log")
        yield address
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(120)
        process.kill()
        nodes.stop()


async def warm_up(address: str, frames: list, timeout_s: float = 600.0) -> None:
    """Drive two robots briefly, retrying while the gateway says it is not ready yet (its
    first deployment state waits for the models to load; through Ray Serve that is slow)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await drive_robots(address, frames, 2, 0, 2.0, 2)
            return
        except aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def litert_runtime(log: Path) -> str | None:
    """What the gateway's log says the model last moved to (``litert``, ``litert-quantized``);
    None while it runs on TensorFlow."""
    runtime = None
    for line in log.read_text(errors="replace").splitlines():
        if "now runs on LiteRT" in line:
            with contextlib.suppress(ValueError):
                runtime = json.loads(line).get("runtime", "litert")
    return runtime


async def on_litert(log: Path, timeout_s: float = 120.0) -> str:
    """Wait until the gateway's log says the version runs on LiteRT; which LiteRT runtime."""
    deadline = time.monotonic() + timeout_s
    while (runtime := litert_runtime(log)) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the gateway did not move to LiteRT within {timeout_s:.0f} s: {log}")
        await asyncio.sleep(0.5)
    return runtime


async def run_gateway_rows(args: argparse.Namespace, root: Path, frames: list,
                           features_label: str, serve_addr: str = "",
                           runtime: str = "tensorflow") -> list[Result]:
    # The gateway's channels send keepalive pings every 30 s; allow them.
    server = aio.server(options=[("grpc.keepalive_permit_without_calls", 1),
                                 ("grpc.http2.min_ping_interval_without_data_ms", 10_000)])
    reg_grpc.add_RegistryServiceServicer_to_server(RegistryDouble(root / "models"), server)
    sink = NullFeatures()
    fs_grpc.add_FeatureStoreServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            features = f"127.0.0.1:{port}"
            if features_label == "real":
                features = stack.enter_context(real_features(root / "features"))
            env = gateway_env(root, f"127.0.0.1:{port}", features, args, features_label,
                              serve_addr, runtime)
            host = "rayserve" if serve_addr else "embedded"
            log = root / f"gateway-{host}-{features_label}-{runtime}.log"
            process = await stack.enter_async_context(gateway_process(env, log))
            print(f"gateway {features_label} ({runtime}): serving; warming up", flush=True)
            await warm_up(env["EDGELOOP_LISTEN_ADDR"], frames)
            runs_on = "TF"
            if runtime == "litert" and not serve_addr:
                runs_on = {"litert-quantized": "LiteRT quantized"}.get(await on_litert(log),
                                                                       "LiteRT")
            label = "+ null features" if features_label == "null" else "+ real features"
            if not serve_addr:
                label = f"({runs_on}) {label}"
            if serve_addr:
                label = f"Ray Serve x{args.rayserve_replicas} {label}"
            return await bench_gateway(args, frames, process, env["EDGELOOP_LISTEN_ADDR"], label)
    finally:
        await server.stop(0)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = Path(tempfile.mkdtemp(prefix="edgeloop-gateway-bench-"))
    model = export_model(root / "models", args.architecture)
    frames = render_frames(64)
    print(f"{len(frames)} frames, mean JPEG {np.mean([len(j) for j, _ in frames]) / 1024:.1f} KiB; "
          f"load average before: {os.getloadavg()[0]:.1f}; work dir {root}", flush=True)
    print(bytecode.advice() or "bytecode: compiled", flush=True)
    print(HEADER, flush=True)
    results = [] if args.skip_limit else bench_limit(model, frames, min(args.seconds, 5.0))
    labels = ["null", "real"] if args.features == "both" else [args.features]
    runtimes = ["tensorflow", "litert"] if args.runtime == "both" else [args.runtime]
    if args.model_host in ("embedded", "both"):
        for runtime in runtimes:
            for label in labels:
                results += asyncio.run(run_gateway_rows(args, root, frames, label,
                                                        runtime=runtime))
    if args.model_host in ("rayserve", "both"):
        with ray_serve_host(root, args.rayserve_replicas) as serve_addr:
            print(f"Ray Serve: serving on {serve_addr}", flush=True)
            for label in labels:
                results += asyncio.run(run_gateway_rows(args, root, frames, label, serve_addr))
    if not args.skip_thesis:
        with flask_server(model, root) as (url, process):
            results += bench_thesis(args, frames, url, process)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    print(HEADER)
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
