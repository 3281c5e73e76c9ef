"""Fleet benchmark: the whole local stack under N robots, the load generator in its own process.

The stack is exactly what `edgeloop up` starts (PostgreSQL — TimescaleDB when installed —,
MLflow, registry, features, trainer, gateway, supervisor), in a private state folder on
free ports. The trainer's ``thesis`` CNN is logged to the stack's MLflow and registered
through the registry like a trained version; one deployment serves it to N devices.

For each row (N robots x fps, or full speed with a window of frames in flight) it prints:
answered frames/s, frame→answer p50/p99/p99.9 (client side), recorded frames/s and ingest
lag p50/p99 (the gateway's receive time → the row's insert time, read from the
database), the time inside the gateway (receive → answer, the ``latency_ms`` the gateway
recorded in every row: what is not the transport or the load generator), and per part:
CPU ms per answered frame and peak RSS (each part's whole process tree: PostgreSQL
backends, Ray workers, MLflow workers included; the load generator's own CPU beside
them). It checks
that every answered frame was recorded exactly once. Beside it, in the same run, the
model-only limit and the thesis transport (``bench/gateway_bench.py``'s).

``--soak-minutes M`` runs one long row instead (default 100 robots x 4 fps). Before it, a
10-robot beige drive feeds the trainer's first sweep, whose promoted version (with its
training weights and dataset snapshot, as in production) serves the soak. The soak samples
RSS, USS (memory no other process shares: what a leak grows; RSS also counts shared
libraries and the PostgreSQL shared buffers a process has touched), processes and open file
descriptors of every part at start, middle and end, and the disk used by spool, traces and
logs, and once more when the last row is in ("drained": what the ingest backlog held is
released). The robots' world turns red at ``--drift-at`` of
the soak: the drift monitor fires, starts a fine-tuning sweep and promotes it, all under
the load; the timeline (change → first event → sweep started → new version serving) is
printed, waiting up to ``--retrain-wait-minutes`` after the load for a sweep still running.

Benchmark only on an otherwise idle machine: the load average is printed before and after.
Run: ``uv run python bench/fleet_bench.py`` (``--help`` for the knobs). The caller's
``EDGELOOP_*`` variables reach ``edgeloop up`` (e.g. ``EDGELOOP_FEATURES_NICE=19`` or
``EDGELOOP_GATEWAY__BATCH_MAX_SIZE=8``) and are printed first; until 2026-12-05 the bench
dropped them, so rows measured "with" such a variable before then ran the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from grpc import aio

sys.path.insert(0, str(Path(__file__).parent))
import gateway_bench  # noqa: E402  (a sibling script: frames, robots, limit and thesis rows)
from edgeloop.compose.stack import bytecode
from edgeloop.compose.stack.spools import read_spools  # noqa: E402
from edgeloop.compose.stack.topology import DEFAULT_PORTS, Topology  # noqa: E402
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2  # noqa: E402
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc  # noqa: E402
from edgeloop.contracts.edge.v1 import edge_pb2  # noqa: E402
from edgeloop.contracts.registry.v1 import deployment_pb2  # noqa: E402
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2  # noqa: E402
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc  # noqa: E402
from edgeloop.platform.channels import open_blocking_channel, open_channel  # noqa: E402
from edgeloop.platform.tls import ClientTLS  # noqa: E402
from edgeloop.testing import free_port  # noqa: E402

MODEL = "distance"
DEPLOYMENT = "fleet"
WARMUP = "fleet-warmup"
"""The deployment of the beige drive that trains the soak's first version."""
WARMUP_ROBOTS = 10
PARTS = ("gateway", "features", "registry", "trainer", "ray", "mlflow", "postgres")


# --- the stack --------------------------------------------------------------------------

@dataclass
class Stack:
    """A running local stack and how to reach it."""

    env: dict[str, str]
    state_dir: Path

    def record(self) -> dict:
        return json.loads((self.state_dir / "stack.json").read_text())

    def secrets(self) -> dict[str, str]:
        return json.loads((self.state_dir / "secrets.json").read_text())

    def address(self, part: str) -> str:
        return self.record()["parts"][part]["address"]

    @property
    def tls(self) -> ClientTLS | None:
        """How clients reach the stack (TLS unless started with EDGELOOP_TLS=off)."""
        return ClientTLS.from_env(self.record().get("tls", {}))

    def tree(self, part: str) -> list[psutil.Process]:
        """The part's processes (every gateway process for ``gateway``) and all they started."""
        parts = self.record()["parts"]
        if part == "ray":
            return _ray_tree(parts.get("ray", {}).get("address", ""))
        names = [n for n in parts if n == part or (part == "gateway" and n.startswith("gateway-"))]
        processes: list[psutil.Process] = []
        for name in names:
            try:
                root = psutil.Process(parts[name]["pid"])
                processes += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return processes


def _ray_tree(gcs_address: str) -> list[psutil.Process]:
    """The Ray head's processes (GCS, raylet, dashboard) and the workers they started.

    `ray start` detaches them, so the stack records no pid: they are the processes whose
    command line names the head's GCS port.
    """
    port = gcs_address.rpartition(":")[2]
    if not port:
        return []
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "gcs" in cmdline and (f":{port}" in cmdline or f"={port}" in cmdline):
            with contextlib.suppress(psutil.Error):
                for member in (process, *process.children(recursive=True)):
                    found[member.pid] = member
    return list(found.values())


def _edgeloop(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeloop.compose", *args], env=env,
                          capture_output=True, text=True, timeout=1200)


@contextlib.contextmanager
def local_stack(root: Path, gateway_processes: int = 1, runtime: str = "auto",
                traces_to: Path | None = None, keep_state: bool = False) -> Iterator[Stack]:
    """The stack as ``edgeloop up`` starts it in ``root``; its span files are copied to
    ``traces_to`` (if given) before the state folder goes (``edgeloop down --purge``: ~800 MB
    of images, database and logs a run, and the Ray head's folder) unless ``keep_state``."""
    env = {**os.environ, "EDGELOOP_STATE_DIR": str(root / "state"),
           "EDGELOOP_GATEWAY_PROCESSES": str(gateway_processes),
           "EDGELOOP_MODEL_RUNTIME": runtime,
           **{_port_variable(part): str(free_port()) for part in DEFAULT_PORTS}}
    started = time.monotonic()
    try:
        result = _edgeloop(env, "up", "--timeout", "900")
        if result.returncode != 0:
            raise SystemExit(f"edgeloop up failed:\n{result.stdout}\n{result.stderr}")
        print(f"stack up in {time.monotonic() - started:.0f} s with {gateway_processes} gateway "
              f"process(es) ({root / 'state'})", flush=True)
        yield Stack(env, root / "state")
    finally:
        _edgeloop(env, "down")
        if traces_to is not None and (root / "state" / "traces").is_dir():
            shutil.copytree(root / "state" / "traces", traces_to, dirs_exist_ok=True)
        if keep_state:
            print(f"state kept: {root / 'state'} (`EDGELOOP_STATE_DIR={root / 'state'} "
                  "edgeloop down --purge` deletes it)", flush=True)
        else:
            _edgeloop(env, "down", "--purge", "--yes")


def publish_model(stack: Stack, root: Path, robots: int,
                  deployments: tuple[str, ...] = (DEPLOYMENT,)) -> dict[str, str]:
    """Log the thesis CNN to the stack's MLflow, register it, deploy it; device tokens.

    ``robots`` devices on the first deployment, WARMUP_ROBOTS on each other one.
    """
    import mlflow
    from edgeloop.platform import bearer

    saved = gateway_bench.export_model(root / "export", "thesis")
    mlflow.set_tracking_uri(stack.record()["parts"]["mlflow"]["url"].removesuffix("/health"))

    class Passthrough(mlflow.pyfunc.PythonModel):
        def predict(self, context: object, model_input: list[str],
                    params: dict | None = None) -> list[str]:
            return model_input

    with mlflow.start_run(experiment_id=mlflow.create_experiment(f"fleet-{uuid.uuid4().hex[:6]}")
                          ) as run:
        mlflow.log_metric("holdout_mae_mm", 10.0)
        mlflow.pyfunc.log_model(name="model", artifacts={"saved_model": str(saved)},
                                python_model=Passthrough(), pip_requirements=["tensorflow"])
    admin = bearer(stack.secrets()["admin_token"])
    with open_blocking_channel(stack.address("registry"), tls=stack.tls) as channel:
        registry = reg_grpc.RegistryServiceStub(channel)
        registry.RegisterModelVersion(reg_pb2.RegisterModelVersionRequest(
            model_name=MODEL, run_id=run.info.run_id, artifact_path="model"),
            metadata=admin, timeout=600)
        tokens = {}
        for deployment in deployments:
            registry.CreateDeployment(reg_pb2.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(
                    name=deployment, model_name=MODEL, active=True,
                    strategy=deployment_pb2.STRATEGY_DIRECT,
                    selector=deployment_pb2.VersionSelector(latest=True))),
                metadata=admin, timeout=60)
            count = robots if deployment == deployments[0] else WARMUP_ROBOTS
            for index in range(count):
                device = f"{deployment}-{index}"
                tokens[device] = registry.RegisterDevice(reg_pb2.RegisterDeviceRequest(
                    name=device, device_id=device, deployment=deployment),
                    metadata=admin, timeout=60).token
    return tokens


def wait_for_litert(stack: Stack, timeout_s: float = 300.0) -> None:
    """Wait until every gateway process says the model runs on LiteRT (``--runtime auto``):
    the registry converts a version to TFLite in the background after publishing it, and
    rows measured before the switch would measure TensorFlow."""
    started = time.monotonic()
    logs = sorted((stack.state_dir / "logs").glob("gateway*.log"))
    while time.monotonic() - started < timeout_s:
        runtimes = {log.name: gateway_bench.litert_runtime(log) for log in logs}
        if logs and None not in runtimes.values():
            print(f"the gateway runs the model on LiteRT ({time.monotonic() - started:.0f} s "
                  f"after it was published): {', '.join(sorted(set(runtimes.values())))}",
                  flush=True)
            return
        time.sleep(2.0)
    print(f"the gateway still runs the model on TensorFlow after {timeout_s:.0f} s: the rows "
          "measure TensorFlow", flush=True)


def train_first_version(stack: Stack, tokens: dict[str, str], seconds: float) -> str:
    """A beige drive on WARMUP, then the trainer's sweep on it, promoted: the version's number."""
    from edgeloop.contracts.trainer.v1 import sweep_pb2
    from edgeloop.contracts.trainer.v1 import trainer_service_pb2 as tr_pb2
    from edgeloop.contracts.trainer.v1 import trainer_service_pb2_grpc as tr_grpc

    started = time.monotonic()
    load = run_load(stack, tokens, [("beige", seconds)], 4.0, 4)
    rec = recorded(stack, load.observation_ids, deployment=WARMUP, delete=False)
    with open_blocking_channel(stack.address("trainer"), tls=stack.tls) as channel:
        trainer = tr_grpc.TrainerServiceStub(channel)
        sweep = trainer.StartSweep(tr_pb2.StartSweepRequest(
            model_name=MODEL, trigger="fleet-bench", num_trials=1, deployment=DEPLOYMENT,
            promote=True, seed=7, data=sweep_pb2.DataSelection(deployments=[WARMUP]),
            search_space=sweep_pb2.SearchSpace(epochs=[8])), timeout=600).sweep
        for _ in trainer.WatchSweep(tr_pb2.WatchSweepRequest(sweep_id=sweep.sweep_id),
                                    timeout=1800):
            pass
        sweep = trainer.GetSweep(tr_pb2.GetSweepRequest(sweep_id=sweep.sweep_id),
                                 timeout=60).sweep
    if not sweep.model_version:
        raise SystemExit(f"the first sweep registered no version: {sweep.error}")
    print(f"first version {sweep.model_version} trained on {rec['distinct']} beige frames of "
          f"{len(tokens)} robots in {time.monotonic() - started:.0f} s "
          f"(holdout MAE {sweep.holdout_mae_mm:.1f} mm)", flush=True)
    return sweep.model_version


# --- the load generator (its own process) -----------------------------------------------

@dataclass
class LoadResult:
    """What the load generator measured and sends back to the main process."""

    answered: int = 0
    errors: int = 0
    error_reasons: dict[str, int] = field(default_factory=dict)
    """FrameErrors by reason name (e.g. FRAME_ERROR_REASON_SPOOL_FULL)."""
    unrecorded: int = 0
    """Frames answered with ``not_recorded`` (the gateway's spool was full): not counted as sent."""
    seconds: float = 0.0
    timeline: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since the drive began, frame->answer ms) per answer, in answer order."""
    observation_ids: list[str] = field(default_factory=list)
    world_started: dict[str, float] = field(default_factory=dict)
    """World → when its first frame was sent (epoch seconds)."""
    cpu_s: float = 0.0
    """CPU seconds the load generator itself used (it shares the cores with the stack)."""


class FleetRobot(gateway_bench.Robot):
    """gateway_bench's robot with a real device id and token, keeping observation ids."""

    def __init__(self, index: int, device: str, token: str, frames: list, fps: float,
                 window: int, phase: float) -> None:
        super().__init__(index, frames, fps, window, phase)
        self.device, self.token = device, token
        self.observation_ids: list[str] = []
        self.error_reasons: Counter[str] = Counter()
        self.unrecorded = 0

    async def run(self, stub: gw_grpc.EdgeGatewayServiceStub, until: float) -> None:
        call = stub.Stream(metadata=(("authorization", f"Bearer {self.token}"),
                                     ("x-device-id", self.device)))
        await call.write(gw_pb2.StreamRequest(hello=edge_pb2.Hello(
            device_id=self.device, session_id=uuid.uuid4().hex, client_version="fleet-bench")))
        await call.read()  # Welcome
        slots = asyncio.Semaphore(self.window)
        reader = asyncio.create_task(self._read(call, slots))
        await self._send(call, slots, until)
        await call.done_writing()
        await reader

    async def _read(self, call: aio.StreamStreamCall, slots: asyncio.Semaphore) -> None:
        while (answer := await call.read()) != aio.EOF:
            now = time.perf_counter()
            if answer.HasField("prediction"):
                seq = answer.prediction.seq
                if answer.prediction.not_recorded:
                    self.unrecorded += 1
                else:
                    self.observation_ids.append(answer.prediction.observation_id)
            elif answer.HasField("error"):
                seq = answer.error.seq
                self.errors += 1
                self.error_reasons[edge_pb2.FrameErrorReason.Name(answer.error.reason)] += 1
            else:
                continue  # a model update or another message that answers no frame
            self.latencies_ms.append((now, (now - self.sent_at.pop(seq)) * 1000))
            slots.release()


PHASINGS = ("random", "lockstep")


def robot_phases(count: int, phasing: str) -> list[float]:
    """Where in its frame period each robot starts sending (0-1).

    ``random``: independent robots, as a fleet is (seeded, so runs compare). ``lockstep``:
    every robot in phase, so the gateway gets all of them at once every period: the worst
    case, and what the fleet rows in bench/README measured before this option.
    """
    if phasing == "lockstep":
        return [0.0] * count
    return [float(p) for p in np.random.default_rng(7).uniform(0.0, 1.0, count)]


async def _drive(address: str, tls_env: dict[str, str], tokens: dict[str, str], frames: list,
                 fps: float, seconds: float, window: int, phasing: str) -> LoadResult:
    async with open_channel(address, tls=ClientTLS.from_env(tls_env)) as channel:
        stub = gw_grpc.EdgeGatewayServiceStub(channel)
        start = time.perf_counter()
        until = start + seconds
        phases = robot_phases(len(tokens), phasing)
        fleet = [FleetRobot(i, device, token, frames, fps, window, phases[i])
                 for i, (device, token) in enumerate(tokens.items())]
        await asyncio.gather(*(robot.run(stub, until) for robot in fleet))
    timeline = sorted((at - start, ms) for robot in fleet for at, ms in robot.latencies_ms)
    return LoadResult(answered=len(timeline), errors=sum(r.errors for r in fleet),
                      error_reasons=dict(sum((r.error_reasons for r in fleet), Counter())),
                      unrecorded=sum(r.unrecorded for r in fleet),
                      seconds=time.perf_counter() - start, timeline=timeline,
                      observation_ids=[o for r in fleet for o in r.observation_ids])


def _load_process(address: str, tls_env: dict[str, str], tokens: dict[str, str],
                  worlds: list[tuple[str, float]], fps: float, window: int, phasing: str,
                  out: multiprocessing.Queue) -> None:
    """Entry point of the load generator process: render frames, drive, report."""
    from edgeloop.edge_client.simulate import render_dataset

    result = LoadResult()
    rendered = {world: [(f.jpeg, f.sensor_mm) for f in render_dataset(world, 64, seed=11)]
                for world, _ in worlds}
    began_cpu = time.process_time()
    for world, seconds in worlds:  # a world change inside the soak, else one world
        result.world_started[world] = time.time()
        part = asyncio.run(_drive(address, tls_env, tokens, rendered[world], fps, seconds,
                                  window, phasing))
        result.answered += part.answered
        result.errors += part.errors
        result.unrecorded += part.unrecorded
        for reason, count in part.error_reasons.items():
            result.error_reasons[reason] = result.error_reasons.get(reason, 0) + count
        result.timeline += [(result.seconds + at, ms) for at, ms in part.timeline]
        result.seconds += part.seconds
        result.observation_ids += part.observation_ids
    result.cpu_s = time.process_time() - began_cpu
    out.put(result)


def run_load(stack: Stack, tokens: dict[str, str], worlds: list[tuple[str, float]], fps: float,
             window: int, phasing: str = "random") -> LoadResult:
    """Drive ``tokens``' robots through ``worlds`` (world, seconds) from another process
    (``phasing``: see :func:`robot_phases`)."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()
    process = context.Process(target=_load_process, args=(
        stack.address("gateway"), stack.record().get("tls", {}), tokens, worlds, fps, window,
        phasing, queue))
    process.start()
    try:
        return queue.get(timeout=sum(seconds for _, seconds in worlds) + 600)
    finally:
        process.join(60)


# --- what the parts used ----------------------------------------------------------------

class PartMeter:
    """CPU seconds and peak RSS of every part's process tree, sampled once a second."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.cpu: dict[str, float] = {}
        self.peak_rss: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        self._known: dict[str, dict[int, float]] = {p: {} for p in PARTS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _cpu_now(self, part: str) -> float:
        # Per pid, the last reading: a worker that exits keeps what it used.
        for process in self.stack.tree(part):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                self._known[part][process.pid] = times.user + times.system + \
                    times.children_user + times.children_system
        return sum(self._known[part].values())

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            for part in PARTS:
                rss = 0.0
                for process in self.stack.tree(part):
                    with contextlib.suppress(psutil.Error):
                        rss += process.memory_info().rss
                self.peak_rss[part] = max(self.peak_rss[part], rss / 2**20)
                self._cpu_now(part)

    def __enter__(self) -> PartMeter:
        self._start = {part: self._cpu_now(part) for part in PARTS}
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = {part: self._cpu_now(part) - self._start[part] for part in PARTS}


def disk_use(stack: Stack) -> dict[str, float]:
    def size(folder: Path) -> float:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20 \
            if folder.exists() else 0.0

    return {name: size(stack.state_dir / name) for name in ("spool", "traces", "logs", "objects")}


# --- what got recorded ------------------------------------------------------------------

def recorded(stack: Stack, observation_ids: list[str], timeout_s: float = 900.0,
             deployment: str = DEPLOYMENT, delete: bool = True) -> dict:
    """Wait until every answered frame has its row; rows, duplicates and ingest lag.

    ``delete`` removes the rows afterwards, so the next row starts on an empty table.
    """
    import psycopg

    url = stack.record()["parts"]["postgres"]["url"]
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url) as conn:
        while True:
            rows, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT observation_id) FROM features.observations "
                "WHERE deployment = %s", (deployment,)).fetchone()
            if distinct >= len(set(observation_ids)) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        # ingest lag, the span of inserts, and the gateway's own receive -> answer time
        # (latency_ms, as it recorded it in every row), in one scan of the rows
        lag = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
            "ingested_at - received_at)), percentile_cont(0.99) WITHIN GROUP (ORDER BY "
            "extract(epoch FROM ingested_at - received_at)), "
            "extract(epoch FROM max(ingested_at) - min(ingested_at)), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) "
            "FROM features.observations WHERE deployment = %s", (deployment,)).fetchone()
        missing = conn.execute(
            "SELECT count(*) FROM unnest(%s::uuid[]) AS sent(id) WHERE NOT EXISTS "
            "(SELECT 1 FROM features.observations o WHERE o.observation_id = sent.id)",
            (list(set(observation_ids)),)).fetchone()[0]
        if delete:
            conn.execute("DELETE FROM features.observations WHERE deployment = %s",
                         (deployment,))
            conn.commit()
    return {"rows": rows, "distinct": distinct, "missing": missing, "lag_p50_s": lag[0] or 0.0,
            "lag_p99_s": lag[1] or 0.0, "ingest_span_s": lag[2] or 0.0,
            "gateway_p50_ms": lag[3] or 0.0, "gateway_p99_ms": lag[4] or 0.0}


# --- rows -------------------------------------------------------------------------------

def report_row(label: str, load: LoadResult, rec: dict, meter: PartMeter) -> str:
    lat = np.array([ms for _, ms in load.timeline] or [0.0])
    p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
    answered_s = load.answered / load.seconds if load.seconds else 0.0
    recorded_s = rec["distinct"] / rec["ingest_span_s"] if rec["ingest_span_s"] else 0.0
    lines = [f"{label}: answered {answered_s:.0f}/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
             f"p99.9 {p999:.1f} ms, errors {load.errors}; recorded {recorded_s:.0f}/s, "
             f"ingest lag p50 {rec['lag_p50_s']:.2f} s p99 {rec['lag_p99_s']:.2f} s; "
             f"answered {len(set(load.observation_ids))}, rows {rec['rows']}, "
             f"missing {rec['missing']}, duplicated {rec['rows'] - rec['distinct']}"]
    if load.unrecorded:
        lines.append(f"  answered, not recorded (spool full): {load.unrecorded}")
    if load.error_reasons:
        lines.append("  errors by reason: " + ", ".join(
            f"{reason.removeprefix('FRAME_ERROR_REASON_')} {count}"
            for reason, count in sorted(load.error_reasons.items())))
    lines.append(f"  inside the gateway (receive -> answer, from the rows): "
                 f"p50 {rec['gateway_p50_ms']:.1f} ms, p99 {rec['gateway_p99_ms']:.1f} ms")
    per_frame = {p: 1000 * meter.cpu[p] / max(load.answered, 1) for p in PARTS}
    per_frame["load generator"] = 1000 * load.cpu_s / max(load.answered, 1)
    lines.append("  cpu ms/frame: " + ", ".join(f"{p} {v:.2f}" for p, v in per_frame.items()))
    lines.append("  peak RSS MB:  " + ", ".join(f"{p} {meter.peak_rss[p]:.0f}" for p in PARTS))
    return "\n".join(lines)


def measure(stack: Stack, tokens: dict[str, str], worlds: list[tuple[str, float]], fps: float,
            window: int, phasing: str, label: str,
            timeline_to: Path | None = None) -> tuple[str, bool]:
    """One row: drive, wait for every row, report; whether recorded = sent. ``timeline_to``:
    a CSV of every answer's time and latency, to see when the slow answers came."""
    with PartMeter(stack) as meter:
        load = run_load(stack, tokens, worlds, fps, window, phasing)
    if timeline_to is not None:
        timeline_to.parent.mkdir(parents=True, exist_ok=True)
        timeline_to.write_text("seconds,latency_ms\n" + "".join(
            f"{at:.4f},{ms:.2f}\n" for at, ms in load.timeline))
    rec = recorded(stack, load.observation_ids)
    ok = rec["missing"] == 0 and rec["rows"] == rec["distinct"]
    return report_row(label, load, rec, meter), ok


def soak(stack: Stack, tokens: dict[str, str], args: argparse.Namespace) -> bool:
    """The long row with a world change inside; whether recorded = sent."""
    seconds = args.soak_minutes * 60
    worlds = [("beige", seconds * args.drift_at), ("red", seconds * (1 - args.drift_at))]
    samples = {"start": sample_parts(stack)}
    soak_started = time.time()
    timer = threading.Timer(seconds / 2, lambda: samples.__setitem__("middle",
                                                                     sample_parts(stack)))
    timer.start()
    with PartMeter(stack) as meter:
        load = run_load(stack, tokens, worlds, args.fps[0], args.window, args.phasing)
    timer.cancel()
    samples["end"] = sample_parts(stack)
    spools_at_end = spool_lines(stack)
    rec = recorded(stack, load.observation_ids, delete=False)
    samples["drained"] = sample_parts(stack)  # every row in: no backlog held in memory
    label = (f"soak {len(tokens)} robots x {args.fps[0]:g} fps ({args.phasing} phases), "
             f"{args.soak_minutes:g} min")
    print(report_row(label, load, rec, meter))
    for when, sample in samples.items():
        print(f"  {when:<6} " + sample.describe())
    if "middle" in samples:
        print("  middle -> end: " + samples["middle"].growth(samples["end"]))
        print("  middle -> drained: " + samples["middle"].growth(samples["drained"]))
    print("  `edgeloop status` as the load ended:")
    for line in spools_at_end:
        print(f"    {line}")
    print("  Grafana's gateway panels over the soak (features.gateway_samples):")
    for line in gateway_history(stack, soak_started):
        print(f"    {line}")
    print_retrain_timeline(stack, load.world_started["red"], args.retrain_wait_minutes * 60)
    return rec["missing"] == 0 and rec["rows"] == rec["distinct"]


@dataclass
class PartSample:
    """Memory, open files and disk of the stack at one moment."""

    rss_mb: dict[str, float]
    uss_mb: dict[str, float]
    processes: dict[str, int]
    fds: dict[str, int]
    disk_mb: dict[str, float]

    def describe(self) -> str:
        return ("RSS MB " + ", ".join(f"{p} {self.rss_mb[p]:.0f}" for p in PARTS)
                + " | USS MB " + ", ".join(f"{p} {self.uss_mb[p]:.0f}" for p in PARTS)
                + " | processes " + ", ".join(f"{p} {self.processes[p]}" for p in PARTS)
                + " | fds " + ", ".join(f"{p} {self.fds[p]}" for p in PARTS)
                + " | disk MB " + ", ".join(f"{k} {v:.1f}" for k, v in self.disk_mb.items()))

    def growth(self, later: PartSample) -> str:
        def pct(before: float, after: float) -> str:
            return f"{100 * (after - before) / before:+.0f} %" if before else "-"

        return ", ".join(f"{p} RSS {pct(self.rss_mb[p], later.rss_mb[p])} "
                         f"USS {pct(self.uss_mb[p], later.uss_mb[p])} "
                         f"processes {later.processes[p] - self.processes[p]:+d} "
                         f"fds {later.fds[p] - self.fds[p]:+d}" for p in PARTS)


def gateway_history(stack: Stack, since: float) -> list[str]:
    """Per gateway process, what its samples since ``since`` say: how many, the backlog's
    peak, how long each recording state lasted, and the frames its rates add up to (each
    sample's rate is over the time since the one before; the first one's interval began
    before ``since`` and is counted from there, so the sum may miss up to an interval's
    frames)."""
    import psycopg

    with psycopg.connect(stack.record()["parts"]["postgres"]["url"]) as conn:
        rows = conn.execute(
            "SELECT gateway_id, extract(epoch FROM time)::float8, backlog_bytes, max_bytes, "
            "recording, robots_streaming, frames_per_s, not_recorded_per_s "
            "FROM features.gateway_samples WHERE time >= to_timestamp(%s) "
            "ORDER BY gateway_id, time", (since,)).fetchall()
    by_gateway: dict[str, list[tuple]] = {}
    for row in rows:
        by_gateway.setdefault(row[0], []).append(row[1:])
    lines = []
    for gateway, samples in by_gateway.items():
        states: Counter[str] = Counter()
        frames = unrecorded = 0.0
        previous = since
        for at, _, _, state, _, fps, unrecorded_fps in samples:
            states[state] += at - previous
            frames += fps * (at - previous)
            unrecorded += unrecorded_fps * (at - previous)
            previous = at
        peak = max(100 * backlog / capacity if capacity else 0.0
                   for _, backlog, capacity, *_ in samples)
        robots = max(sample[4] for sample in samples)
        lines.append(f"{gateway}: {len(samples)} samples, backlog peak {peak:.0f} %, up to "
                     f"{robots} robots; " + ", ".join(f"{state} {seconds:.0f} s"
                                                     for state, seconds in states.items())
                     + f"; frames received {frames:,.0f}, answered without a record "
                     f"{unrecorded:,.0f}")
    return lines or ["no samples (EDGELOOP_GATEWAY__SAMPLE_INTERVAL_S=0?)"]


def spool_lines(stack: Stack) -> list[str]:
    """What `edgeloop status` says of each gateway's spool now."""
    parts = [name for name in stack.record()["parts"] if name.startswith("gateway")]
    return [line for report in read_spools(Topology.from_env(stack.state_dir), parts)
            for line in report.lines(running=True)]


def sample_parts(stack: Stack) -> PartSample:
    """RSS, USS, processes and open fds of every part's tree, and the state folder's disk use."""
    rss, uss, processes, fds = {}, {}, {}, {}
    for part in PARTS:
        rss[part] = uss[part] = 0.0
        processes[part] = fds[part] = 0
        for process in stack.tree(part):
            with contextlib.suppress(psutil.Error):
                memory = process.memory_full_info()
                rss[part] += memory.rss / 2**20
                uss[part] += memory.uss / 2**20
                fds[part] += process.num_fds()
                processes[part] += 1
    return PartSample(rss, uss, processes, fds, disk_use(stack))


def print_retrain_timeline(stack: Stack, changed_at: float, wait_s: float) -> None:
    """World change → first drift event → sweep started → its version's first answer."""
    import psycopg

    deadline = time.monotonic() + wait_s
    with psycopg.connect(stack.record()["parts"]["postgres"]["url"], autocommit=True) as conn:
        while True:
            sweeps = conn.execute(
                "SELECT sweep_id, state, extract(epoch FROM created_at)::float8, "
                "sweep->>'model_version', coalesce((sweep->>'promoted')::bool, false), "
                "sweep->>'promotion_note' FROM trainer.sweeps "
                "WHERE sweep->>'trigger' LIKE 'drift:%%' ORDER BY created_at").fetchall()
            running = [s for s in sweeps if s[1] in ("QUEUED", "RUNNING")]
            if not running or time.monotonic() > deadline:
                break
            time.sleep(5.0)
        events = conn.execute(
            "SELECT rule, kind, extract(epoch FROM fired_at)::float8 FROM features.drift_events "
            "WHERE deployment = %s ORDER BY fired_at", (DEPLOYMENT,)).fetchall()
        print(f"  drift events {len(events)}; drift sweeps "
              f"{dict(Counter(s[1] for s in sweeps)) or 'none'}")
        if events:
            rule, kind, fired = events[0]
            print(f"  first event {fired - changed_at:+.0f} s after the change to red "
                  f"({rule}, {kind})")
        for sweep_id, state, created, version, promoted, note in sweeps:
            served = conn.execute(
                "SELECT extract(epoch FROM min(received_at))::float8 FROM features.observations "
                "WHERE deployment = %s AND model_version = %s", (DEPLOYMENT, version or "")
            ).fetchone()[0] if promoted else None
            print(f"  sweep {sweep_id} started {created - changed_at:+.0f} s after the change: "
                  f"{state}, version {version or '-'}, "
                  + (f"promoted, first answer {served - changed_at:+.0f} s after the change"
                     if promoted and served else f"promoted {promoted} ({note or '-'})"))


def run_stack(root: Path, gateway_processes: int, args: argparse.Namespace) -> bool:
    """The soak or every row on one stack; whether every row recorded exactly what was sent."""
    root.mkdir(mode=0o755)
    ok = True
    traces_to = args.traces_to / f"gateways-{gateway_processes}" if args.traces_to else None
    with local_stack(root, gateway_processes, args.runtime, traces_to,
                     args.keep_state) as stack:
        robots = max(args.robots) if not args.soak_minutes else (
            args.robots[0] if args.robots != [10, 100, 200] else 100)
        if args.soak_minutes:
            tokens = publish_model(stack, root, robots, (DEPLOYMENT, WARMUP))
            warmup = {d: t for d, t in tokens.items() if d.startswith(f"{WARMUP}-")}
            train_first_version(stack, warmup, args.warmup_seconds)
            return soak(stack, {d: t for d, t in tokens.items() if d not in warmup}, args)
        tokens = publish_model(stack, root, robots)
        if args.runtime == "auto":
            wait_for_litert(stack)
        rows = [(n, fps) for n in args.robots for fps in args.fps] + [(10, 0.0)]
        for count, fps in rows:
            fleet = dict(list(tokens.items())[:count])
            rate = (f"{fps:g} fps ({args.phasing} phases)" if fps
                    else f"full speed (window {args.window})")
            csv_name = f"gateways-{gateway_processes}-{count}x{fps:g}fps.csv"
            timeline_to = args.latencies_to / csv_name if args.latencies_to else None
            row, good = measure(stack, fleet, [("beige", args.seconds)], fps, args.window,
                                args.phasing,
                                f"{count} robots x {rate}, {gateway_processes} gateway process(es)",
                                timeline_to)
            ok &= good
            print(row, flush=True)
    return ok


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robots", type=gateway_bench._ints, default=[10, 100, 200])
    parser.add_argument("--fps", type=gateway_bench._floats, default=[4.0],
                        help="frames/s per robot; a full-speed row (10 robots) is added")
    parser.add_argument("--phasing", choices=PHASINGS, default="random",
                        help="where in its frame period each robot starts: random "
                             "(independent robots, seeded) or lockstep (all at once every "
                             "period: the worst burst)")
    parser.add_argument("--window", type=int, default=4,
                        help="frames in flight per robot at full speed")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per row")
    parser.add_argument("--soak-minutes", type=float, default=0.0,
                        help="run the soak instead of the rows (100 robots unless --robots)")
    parser.add_argument("--drift-at", type=float, default=0.3,
                        help="soak: fraction of the soak after which the world turns red")
    parser.add_argument("--warmup-seconds", type=float, default=60.0,
                        help=f"soak: the {WARMUP_ROBOTS}-robot beige drive the first version "
                        "is trained on")
    parser.add_argument("--retrain-wait-minutes", type=float, default=15.0,
                        help="soak: how long to wait after the load for a drift sweep to end")
    parser.add_argument("--gateway-processes", type=gateway_bench._ints, default=[1],
                        help="gateway processes on the one port (EDGELOOP_GATEWAY_PROCESSES); "
                        "several values: one stack, and every row, per value")
    parser.add_argument("--runtime", choices=("auto", "tensorflow"), default="auto",
                        help="the gateway's EDGELOOP_MODEL_RUNTIME: auto (LiteRT once the "
                             "registry has converted the version; the rows wait for it) or "
                             "tensorflow")
    parser.add_argument("--skip-beside", action="store_true",
                        help="skip the model-only limit and thesis transport rows")
    parser.add_argument("--latencies-to", type=Path, default=None,
                        help="write each row's answers (seconds since the row began, "
                             "latency ms) as CSV files into this folder")
    parser.add_argument("--traces-to", type=Path, default=None,
                        help="copy the stack's span files (traces/*.jsonl) to this folder "
                             "before the stack's state is removed, e.g. to see where a "
                             "frame's time went (gateway.frame, model_host.predict spans)")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep each stack's state folder (its logs, database and images, "
                             "~800 MB a run) instead of deleting it at the end")
    return parser.parse_args()


BENCH_VARIABLES = ("EDGELOOP_STATE_DIR", "EDGELOOP_GATEWAY_PROCESSES", "EDGELOOP_MODEL_RUNTIME")
"""What :func:`local_stack` sets itself, beside every part's port."""


def _port_variable(part: str) -> str:
    return f"EDGELOOP_{part.upper()}_PORT"


def passed_settings() -> str:
    """The caller's ``EDGELOOP_*`` variables that reach ``edgeloop up`` (priorities, a
    part's settings such as ``EDGELOOP_GATEWAY__BATCH_MAX_SIZE``); the bench sets the state
    folder, ports, gateway processes and runtime itself."""
    own = {*BENCH_VARIABLES, *(_port_variable(part) for part in DEFAULT_PORTS)}
    passed = sorted(f"{k}={v}" for k, v in os.environ.items()
                    if k.startswith("EDGELOOP_") and k not in own)
    return " ".join(passed) or "none (the defaults)"


def describe_sampling() -> str:
    """Which frames' traces the stack keeps (the environment it inherits)."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return (f"OTEL_TRACES_SAMPLER={os.environ['OTEL_TRACES_SAMPLER']} "
                f"OTEL_TRACES_SAMPLER_ARG={os.environ.get('OTEL_TRACES_SAMPLER_ARG', '')}")
    limit = os.environ.get("EDGELOOP_TRACES_PER_SECOND", "")
    if limit and float(limit) == 0:
        return "every frame (EDGELOOP_TRACES_PER_SECOND=0)"
    return f"up to {limit or 'the default of 50'} frame traces a second per gateway process"


def main() -> None:
    args = parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    print(bytecode.advice() or "bytecode: compiled", flush=True)
    print(f"traces: {describe_sampling()}", flush=True)
    print(f"settings passed to edgeloop up: {passed_settings()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="edgeloop-fleet-bench-"))
    os.chmod(root, 0o755)
    ok = True
    for processes in args.gateway_processes:
        ok &= run_stack(root / f"gateways-{processes}", processes, args)
    if not args.skip_beside and not args.soak_minutes:
        frames = gateway_bench.render_frames(64)
        model = gateway_bench.export_model(root / "limit", "thesis")
        gateway_bench.bench_limit(model, frames, 5.0)
        with gateway_bench.flask_server(model, root) as (url, process):
            thesis_args = argparse.Namespace(robots=[10], fps=[4.0, 0.0], seconds=10.0)
            gateway_bench.bench_thesis(thesis_args, frames, url, process)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if not args.keep_state:
        shutil.rmtree(root, ignore_errors=True)
    print("recorded = sent in every row" if ok else "SOME FRAMES WERE LOST OR DUPLICATED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
