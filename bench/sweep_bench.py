"""Sweep benchmark: a 4-trial sweep of at most 10 epochs on 3,000 simulated frames.

Starts a private PostgreSQL, the features service, the registry and the trainer as real
processes (the trainer with its own local Ray), ingests 3,000 labelled beige frames,
runs one sweep through the trainer's gRPC contract and prints:

- wall time from StartSweep to SUCCEEDED, and its phases (snapshot, trials, registration)
  from the sweep's own progress events;
- peak memory of the trainer process tree (trainer + Ray GCS/raylet/workers) as summed
  PSS (shared pages split among their sharers) and summed RSS, sampled every 0.5 s.

Run: ``uv run python bench/sweep_bench.py [--frames 3000] [--trials 4] [--epochs 10]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psutil
from edgeloop.compose.stack import bytecode
from edgeloop.contracts.features.v1 import (
    feature_store_service_pb2,
    feature_store_service_pb2_grpc,
    observation_pb2,
)
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2, trainer_service_pb2_grpc
from edgeloop.platform.pgcluster import PostgresCluster
from edgeloop.testing import ServiceProcess, free_port
from google.protobuf.timestamp_pb2 import Timestamp

ADMIN = "sweep-bench-admin-token-0123456789"


class TreeMemory:
    """Peak memory of a process and all its descendants, sampled in a thread.

    ``peak`` sums each process's PSS (proportional set size: a page shared by n processes
    counts 1/n in each), the memory the tree really holds: the trials map one image file,
    whose pages summed RSS would count once per trial. ``peak_rss`` is the plain sum of
    RSS, for comparison with older figures.
    """

    def __init__(self, pid: int, period_s: float = 0.5) -> None:
        self.root = psutil.Process(pid)
        self.period_s = period_s
        self.peak = 0
        self.peak_rss = 0
        self.at_peak: list[tuple[str, int]] = []
        """Each process's PSS at the peak, largest first: where the memory is."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> tuple[int, int, list[tuple[str, int]]]:
        pss = rss = 0
        parts: list[tuple[str, int]] = []
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                share = getattr(info, "pss", info.rss)
                pss += share
                rss += info.rss
                parts.append((process_label(proc), share))
        return pss, rss, sorted(parts, key=lambda part: -part[1])

    def _loop(self) -> None:
        while not self._stop.is_set():
            pss, rss, parts = self._sample()
            if pss > self.peak:
                self.peak, self.at_peak = pss, parts
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(self.period_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def process_label(proc: psutil.Process) -> str:
    """A short name for a process: Ray sets its workers' titles (``ray::ImplicitFunc``)."""
    cmdline = proc.cmdline()
    if cmdline and cmdline[0].startswith("ray::"):
        return cmdline[0].split()[0]
    if "--multiprocessing-fork" in cmdline:
        return "multiprocessing child (the registration's model process)"
    if any("resource_tracker" in arg for arg in cmdline):
        return "multiprocessing resource tracker"
    modules = [arg for arg in cmdline if arg.startswith(("edgeloop.", "ray."))]
    if "-m" in cmdline and modules:
        return modules[0]
    scripts = [Path(arg).name for arg in cmdline[1:] if arg.endswith(".py")]
    return scripts[0] if scripts else proc.name()


def ingest_frames(address: str, frames: int) -> int:
    """Render ``frames`` beige frames and ingest them; returns how many are labelled."""
    from edgeloop.edge_client.simulate import render_dataset

    start = datetime.now(UTC) - timedelta(hours=2)
    labelled = 0

    def batches():  # noqa: ANN202
        nonlocal labelled
        batch = []
        for i, frame in enumerate(render_dataset("beige", frames, seed=5)):
            ts = Timestamp()
            ts.FromDatetime(start + timedelta(milliseconds=250 * i))
            obs = observation_pb2.Observation(
                observation_id=str(uuid.uuid4()),
                time=ts,
                device_id="bench",
                deployment="bench-beige",
                seq=i,
                jpeg=frame.jpeg,
            )
            if frame.sensor_mm is not None:
                obs.sensor_mm = frame.sensor_mm
                labelled += 1
            batch.append(obs)
            if len(batch) == 100:
                yield feature_store_service_pb2.IngestRequest(observations=batch)
                batch = []
        if batch:
            yield feature_store_service_pb2.IngestRequest(observations=batch)

    with grpc.insecure_channel(address) as channel:
        stub = feature_store_service_pb2_grpc.FeatureStoreServiceStub(channel)
        stub.Ingest(batches(), timeout=1800)
    return labelled


def run_sweep(
    address: str, trials: int, epochs: int, concurrent: int = 0
) -> tuple[sweep_pb2.Sweep, list[sweep_pb2.SweepEvent], float]:
    """StartSweep and follow it to the end; returns the sweep, its events and the wall time."""
    request = trainer_service_pb2.StartSweepRequest(
        model_name="bench",
        data=sweep_pb2.DataSelection(deployments=["bench-beige"]),
        num_trials=trials,
        max_concurrent_trials=concurrent,
        search_space=sweep_pb2.SearchSpace(epochs=[epochs]),
        promote=True,
        seed=1,
    )
    with grpc.insecure_channel(address) as channel:
        stub = trainer_service_pb2_grpc.TrainerServiceStub(channel)
        started = time.perf_counter()
        sweep = stub.StartSweep(request, timeout=600).sweep
        events = [
            r.event
            for r in stub.WatchSweep(trainer_service_pb2.WatchSweepRequest(sweep_id=sweep.sweep_id))
        ]
        wall = time.perf_counter() - started
        sweep = stub.GetSweep(
            trainer_service_pb2.GetSweepRequest(sweep_id=sweep.sweep_id), timeout=60
        ).sweep
    return sweep, events, wall


def phases(events: list[sweep_pb2.SweepEvent]) -> dict[str, float]:
    """Seconds spent building the snapshot, running trials and registering, from the events."""

    def first(kind: int) -> float:
        return next(e.time.ToNanoseconds() for e in events if e.type == kind) / 1e9

    running = (
        next(e.time.ToNanoseconds() for e in events if e.state == sweep_pb2.SWEEP_STATE_RUNNING)
        / 1e9
    )
    snap = first(sweep_pb2.SWEEP_EVENT_TYPE_SNAPSHOT_BUILT)
    trials_done = (
        max(
            e.time.ToNanoseconds()
            for e in events
            if e.type == sweep_pb2.SWEEP_EVENT_TYPE_TRIAL_FINISHED
        )
        / 1e9
    )
    registered = first(sweep_pb2.SWEEP_EVENT_TYPE_VERSION_REGISTERED)
    return {
        "snapshot": snap - running,
        "trials": trials_done - snap,
        "registration": registered - trials_done,
    }


def _epoch_gaps(times: list[tuple[int, float]], started: float) -> list[str]:
    """Seconds per epoch, a resumed trial's first epoch counted from its resume (not its
    pause: the wait at a rung is not the epoch's)."""
    gaps, last, resumed = [], started, False
    for kind, at in times:
        if kind == sweep_pb2.SWEEP_EVENT_TYPE_TRIAL_RESUMED:
            last, resumed = at, True
        elif kind == sweep_pb2.SWEEP_EVENT_TYPE_EPOCH:
            gaps.append(f"{at - last:.1f}{'r' if resumed else ''}")
            last, resumed = at, False
    return gaps


def trial_timeline(events: list[sweep_pb2.SweepEvent]) -> list[str]:
    """Per trial: when it started (after the snapshot) and how long its epochs took."""
    snap = next((e.time.ToNanoseconds() / 1e9 for e in events
                 if e.type == sweep_pb2.SWEEP_EVENT_TYPE_SNAPSHOT_BUILT), None)
    if snap is None:
        return []
    lines = []
    for trial in dict.fromkeys(e.trial_id for e in events if e.trial_id):
        times = [(e.type, e.time.ToNanoseconds() / 1e9) for e in events if e.trial_id == trial]
        started = next(t for k, t in times if k == sweep_pb2.SWEEP_EVENT_TYPE_TRIAL_STARTED)
        epochs = [t for k, t in times if k == sweep_pb2.SWEEP_EVENT_TYPE_EPOCH]
        ended = next((t for k, t in times if k == sweep_pb2.SWEEP_EVENT_TYPE_TRIAL_FINISHED),
                     epochs[-1] if epochs else started)
        gaps = _epoch_gaps(times, started)
        lines.append(f"  trial {trial}: started +{started - snap:.1f} s, ended "
                     f"+{ended - snap:.1f} s, first epoch {gaps[0] if gaps else '0.0'} s "
                     f"(from its start), later epochs " + (", ".join(gaps[1:]) or "-")
                     + " s (r: resumed after a pause at its rung, from its resume)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-frames", type=int, default=0,
                        help="the trainer's EDGELOOP_TRAIN_EPOCH_FRAMES: training frames per "
                             "epoch at most (0: every frame)")
    parser.add_argument("--concurrent", type=int, default=0,
                        help="trials at a time (default 0: the trainer fits them to its CPUs)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edgeloop-sweep-bench-"))
    os.chmod(root, 0o755)  # PostgreSQL runs as an unprivileged user when we are root
    cluster = PostgresCluster(data_dir=root / "pg", port=free_port(), durable=False)
    cluster.start()
    processes: list[ServiceProcess] = []
    try:
        db = cluster.ensure_database("bench")
        common = {
            "EDGELOOP_DATABASE_URL": db,
            "EDGELOOP_OBJECT_STORE_DIR": str(root / "objects"),
            "EDGELOOP_MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "EDGELOOP_LOG_LEVEL": "WARNING",
            # MLflow's SQL model registry resolves models:/m-... through the *global*
            # tracking URI (a TODO in mlflow's sqlalchemy_store), so the registry process
            # needs it in its environment too
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        }
        features = ServiceProcess(
            "edgeloop.features",
            {**common, "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}"},
            root / "features.log",
        )
        registry = ServiceProcess(
            "edgeloop.registry",
            {
                **common,
                "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
                "EDGELOOP_ADMIN_TOKEN": ADMIN,
                "EDGELOOP_MODEL_REPOSITORY": str(root / "models"),
            },
            root / "registry.log",
        )
        processes += [features, registry]
        for process in processes:  # registered first, so a failed start is still stopped
            process.start(timeout_s=300)
        t0 = time.perf_counter()
        labelled = ingest_frames(features.address, args.frames)
        print(
            f"ingested {args.frames} frames ({labelled} labelled) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        trainer = ServiceProcess(
            "edgeloop.trainer",
            {
                **common,
                "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
                "EDGELOOP_FEATURES_ADDR": features.address,
                "EDGELOOP_REGISTRY_ADDR": registry.address,
                "EDGELOOP_REGISTRY_TOKEN": ADMIN,
                "EDGELOOP_WEBHOOK_ADDR": "",
                "EDGELOOP_WORK_DIR": str(root / "work"),
                "EDGELOOP_RAY_DASHBOARD_PORT": str(free_port()),
                "EDGELOOP_RAY_AUTH_TOKEN_FILE": str(root / "ray_token"),
                "EDGELOOP_TRAIN_EPOCH_FRAMES": str(args.epoch_frames),
            },
            root / "trainer.log",
        )
        processes.append(trainer)
        trainer.start(timeout_s=300)
        with TreeMemory(trainer.process.pid) as memory:
            sweep, events, wall = run_sweep(trainer.address, args.trials, args.epochs,
                                            args.concurrent)
        state = sweep_pb2.SweepState.Name(sweep.state)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(bytecode.advice() or "bytecode: compiled")
        print(f"sweep {sweep.sweep_id}: {state} {sweep.error}")
        print(
            f"  snapshot: {sweep.dataset.observation_count} frames "
            f"({sweep.dataset.train_count}/{sweep.dataset.validation_count}/{sweep.dataset.holdout_count})"
        )
        print(
            f"  trials: {len(sweep.trials)}, concurrent {sweep.max_concurrent_trials}, epochs done "
            f"{[t.epochs_done for t in sweep.trials]} (halving at rungs stops the poor ones)"
        )
        print(
            f"  best val MAE {min(t.best_val_mae_mm for t in sweep.trials):.1f} mm, holdout MAE "
            f"{sweep.holdout_mae_mm:.1f} mm, version {sweep.model_version}"
        )
        if sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED:
            print("  phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases(events).items()))
            print("\n".join(trial_timeline(events)))
        print(f"WALL TIME  {wall:.1f} s  (target <= 60 s for 4 trials on 3,000 frames)")
        print(f"PEAK PSS   {memory.peak / 2**20:.0f} MiB  (trainer + Ray processes; summed RSS "
              f"{memory.peak_rss / 2**20:.0f} MiB counts shared pages once per process)")
        print("  at the peak: " + ", ".join(f"{label} {share / 2**20:.0f}"
                                           for label, share in memory.at_peak) + " MiB")
    finally:
        for process in reversed(processes):
            process.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
