"""Features ingest benchmark: observations/s through FeatureStore.Ingest, statistics included.

Renders realistic 320x240 rear-camera JPEGs with the edge client's scene simulator,
starts a private PostgreSQL cluster (edgeloop.platform.pgcluster) and the features
service as its own process (``python -m edgeloop.features``, local-folder object
store), then sends N observations in batches over concurrent Ingest streams and
prints observations/s. Beside it, the statistics alone (decode + every OpenCV
statistic) on one thread and on the service's thread pool.

``--branch`` picks the features schema's database branch: ``default`` (TimescaleDB when it
is installed, as ``edgeloop up`` does), ``plain``, ``timescaledb``, or ``both`` (the ingest
run once per branch, each on its own fresh cluster, and a line comparing them).

    uv run python bench/ingest_bench.py                 # 20,000 observations
    uv run python bench/ingest_bench.py -n 5000 --streams 1 --batch 100
    uv run python bench/ingest_bench.py --branch both   # plain PostgreSQL vs TimescaleDB
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import grpc
import psutil
import psycopg
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc, observation_pb2
from edgeloop.edge_client.simulate import render_dataset
from edgeloop.features import statistics
from edgeloop.features.statistics import jpeg_stats
from edgeloop.platform.pgcluster import PostgresCluster, find_bindir, timescaledb_installed
from edgeloop.testing import ServiceProcess, free_port


def render(frames: int, scenario: str) -> list[tuple[bytes, float | None]]:
    """``frames`` distinct JPEGs with their sensor readings."""
    return [(f.jpeg, f.sensor_mm) for f in render_dataset(scenario, frames, seed=1)]


def observations(n: int, frames: list[tuple[bytes, float | None]],
                 ) -> Iterator[observation_pb2.Observation]:
    """``n`` observations from 10 simulated cars at 4 fps, cycling through ``frames``."""
    start = datetime.now(UTC) - timedelta(hours=2)
    for i in range(n):
        jpeg, sensor = frames[i % len(frames)]
        obs = observation_pb2.Observation(
            observation_id=str(uuid.uuid4()), device_id=f"car-{i % 10}", session_id="bench",
            seq=i // 10, deployment="bench", data_group="bench", model_name="distance",
            model_version="1", arm="stable", prediction_mm=(sensor or 300.0) + 5.0,
            latency_ms=3.0, trace_id=uuid.uuid4().hex, jpeg=jpeg)
        if sensor is not None:
            obs.sensor_mm = sensor
        obs.time.FromDatetime(start + timedelta(seconds=(i // 10) / 4))
        yield obs


def stats_throughput(jpegs: list[bytes], workers: int, repeat: int) -> tuple[float, float]:
    """Images/s and CPU ms/image of decode + statistics on ``workers`` threads."""
    cv2.setNumThreads(1)  # as in the service: parallelism from the thread pool
    work = jpegs * repeat
    size = -(-len(work) // workers)
    chunks = [work[i:i + size] for i in range(0, len(work), size)]
    began, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda chunk: [jpeg_stats(j) for j in chunk], chunks))
    return (len(work) / (time.perf_counter() - began),
            (time.process_time() - cpu) / len(work) * 1e3)


def stats_breakdown(jpegs: list[bytes]) -> dict[str, float]:
    """CPU ms per image of each step of ``jpeg_stats``, on one thread.

    The steps of ``statistics.image_stats`` one by one, on the half-resolution decode the
    statistics are defined at (``statistics.decode_jpeg``), with the module's constants.
    """
    images = [statistics.decode_jpeg(j)[0] for j in jpegs]
    greys = [cv2.cvtColor(i, cv2.COLOR_BGR2GRAY) for i in images]
    fast = statistics._fast()  # noqa: SLF001 - the service's own detector settings
    steps = {
        "decode (header + 1/2 scale)": (jpegs, statistics.decode_jpeg),
        "rgb+hsv means": (images, lambda i: (cv2.mean(i),
                                             cv2.mean(cv2.cvtColor(i, cv2.COLOR_BGR2HSV)))),
        "grey+contrast": (images, lambda i: cv2.meanStdDev(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY))),
        "laplacian": (greys, lambda g: cv2.meanStdDev(cv2.Laplacian(g, cv2.CV_16S))),
        "canny": (greys, lambda g: cv2.countNonZero(
            cv2.Canny(g, statistics.CANNY_LOW, statistics.CANNY_HIGH))),
        "fast keypoints": (greys, lambda g: fast.detect(g, None)),
        "entropy": (greys, statistics._entropy),  # noqa: SLF001
    }
    costs = {}
    for name, (items, step) in steps.items():
        cpu = time.process_time()
        for _ in range(3):
            for item in items:
                step(item)
        costs[name] = (time.process_time() - cpu) / (3 * len(items)) * 1e3
    return costs


def ingest(address: str, requests: list[list[pb.IngestRequest]]) -> tuple[float, int, int, int]:
    """Send each stream's requests on its own Ingest call, concurrently; seconds and counts."""
    with grpc.insecure_channel(address) as channel:
        stub = feature_store_service_pb2_grpc.FeatureStoreServiceStub(channel)
        began = time.perf_counter()
        futures = [stub.Ingest.future(iter(stream), timeout=600) for stream in requests]
        replies = [f.result() for f in futures]
        elapsed = time.perf_counter() - began
    return (elapsed, sum(r.stored for r in replies), sum(r.duplicates for r in replies),
            sum(len(r.rejected) for r in replies))


def send_all(address: str, observations: list[observation_pb2.Observation],
             batch: int = 250) -> tuple[int, int]:
    """Ingest ``observations`` in batches over two concurrent calls: (stored, rejected)."""
    batches = [pb.IngestRequest(observations=observations[i:i + batch])
               for i in range(0, len(observations), batch)]
    _, stored, _, rejected = ingest(address, [batches[0::2], batches[1::2]])
    return stored, rejected


@contextmanager
def features_on_private_cluster(prefix: str, durable: bool = True,
                                preload: bool | None = None, workers: int = 0,
                                ) -> Iterator[tuple[PostgresCluster, ServiceProcess, str]]:
    """A fresh PostgreSQL cluster (TimescaleDB preloaded per ``preload``; None: whenever
    installed) and the features service on it as its own process with a local-folder
    object store: (cluster, service, database URL). Everything is removed on exit."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)  # the postgres user runs the cluster inside it
    cluster = PostgresCluster(data_dir=root / "pg", port=free_port(), durable=durable,
                              timescaledb_preload=preload)
    service = None
    try:
        cluster.start()
        url = cluster.ensure_database("bench")
        env = {"EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}", "EDGELOOP_DATABASE_URL": url,
               "EDGELOOP_OBJECT_STORE_DIR": str(root / "objects"), "EDGELOOP_LOG_LEVEL": "WARNING",
               "EDGELOOP_INGEST_WORKERS": str(workers)}
        service = ServiceProcess("edgeloop.features", env, root / "features.log").start()
        yield cluster, service, url
    finally:
        if service:
            service.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds used so far by ``processes`` (gone ones count 0)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_processes(cluster: PostgresCluster) -> list[psutil.Process]:
    """The postmaster and its backends (the service's connections among them)."""
    postmaster = psutil.Process(cluster.pid())
    return [postmaster, *postmaster.children(recursive=True)]


def build_requests(n: int, batch: int, streams: int,
                   frames: list[tuple[bytes, float | None]]) -> list[list[pb.IngestRequest]]:
    """The batches, dealt round-robin over ``streams`` calls."""
    all_obs = list(observations(n, frames))
    batches = [pb.IngestRequest(observations=all_obs[i:i + batch]) for i in range(0, n, batch)]
    return [batches[s::streams] for s in range(streams)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--observations", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=250, help="observations per IngestRequest")
    parser.add_argument("--streams", type=int, default=2, help="concurrent Ingest calls")
    parser.add_argument("--workers", type=int, default=0,
                        help="EDGELOOP_INGEST_WORKERS (0: the service's default)")
    parser.add_argument("--frames", type=int, default=300, help="distinct rendered frames")
    parser.add_argument("--scenario", default="beige")
    parser.add_argument("--no-fsync", action="store_true", help="PostgreSQL without fsync")
    parser.add_argument("--branch", choices=["default", "plain", "timescaledb", "both"],
                        default="default", help="the features schema's database branch(es)")
    args = parser.parse_args()

    print(f"cpus={os.cpu_count()} observations={args.observations} batch={args.batch} "
          f"streams={args.streams} workers={args.workers or 'default'}")
    frames = render(args.frames, args.scenario)
    jpegs = [jpeg for jpeg, _ in frames]
    mean_kb = sum(map(len, jpegs)) / len(jpegs) / 1024
    print(f"frames: {len(frames)} distinct 320x240 JPEGs, mean {mean_kb:.1f} KiB")
    repeat = max(1, 2000 // len(jpegs))
    cpus = os.cpu_count() or 1
    for workers in (1, cpus):
        rate, cpu_ms = stats_throughput(jpegs, workers, repeat)
        print(f"statistics only, {workers} thread(s): {rate:8.0f} images/s, {cpu_ms:.3f} CPU ms "
              f"per image -> {cpus * 1e3 / cpu_ms:8.0f} images/s on {cpus} idle cores")
    breakdown = stats_breakdown(jpegs)
    print("statistics CPU ms per image: " + ", ".join(f"{k} {v:.3f}" for k, v in breakdown.items()))

    results = {branch: run_ingest(args, frames, branch) for branch in branches(args.branch)}
    if len(results) == 2:
        plain, timescale = results["plain"], results["timescaledb"]
        print(f"branches: plain {plain:8.0f} vs timescaledb {timescale:8.0f} observations/s "
              f"(timescaledb/plain = {timescale / plain:.2f}; wall clock: other load counts)")


PRELOAD = {"default": None, "plain": False, "timescaledb": True}
"""The cluster's TimescaleDB preload per --branch value (None: whenever installed)."""


def branches(choice: str) -> list[str]:
    """The branches to run for ``--branch``; TimescaleDB ones need the extension installed."""
    wanted = ["plain", "timescaledb"] if choice == "both" else [choice]
    if "timescaledb" in wanted and not timescaledb_installed(find_bindir()):
        raise SystemExit("TimescaleDB is not installed for this PostgreSQL: run ./run test "
                         "(as root) or ../shared/timescaledb/install.sh first")
    return wanted


def is_hypertable(url: str) -> bool:
    """Whether the features service made ``features.observations`` a hypertable."""
    with psycopg.connect(url) as conn:
        if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            return False
        return bool(conn.execute("SELECT 1 FROM timescaledb_information.hypertables WHERE "
                                 "hypertable_schema = 'features' AND hypertable_name = "
                                 "'observations'").fetchone())


def run_ingest(args: argparse.Namespace, frames: list[tuple[bytes, float | None]],
               branch: str) -> float:
    """One ingest run on a fresh cluster of ``branch``; prints its figures, returns obs/s."""
    with features_on_private_cluster("edgeloop-ingest-bench-", durable=not args.no_fsync,
                                     preload=PRELOAD[branch], workers=args.workers,
                                     ) as (cluster, service, url):
        print(f"--- branch {branch}: features.observations is "
              f"{'a TimescaleDB hypertable' if is_hypertable(url) else 'a plain table'}")
        warm = build_requests(min(500, args.observations), args.batch, 1, frames)
        ingest(service.address, warm)  # connections, threads, first chunk of the table
        requests = build_requests(args.observations, args.batch, args.streams, frames)
        features_proc = psutil.Process(service.process.pid)
        pg_procs = postgres_processes(cluster)
        cpu_before = (cpu_seconds([features_proc]), cpu_seconds(pg_procs))
        load_before = os.getloadavg()[0]
        elapsed, stored, duplicates, rejected = ingest(service.address, requests)
        cpu_features = cpu_seconds([features_proc]) - cpu_before[0]
        cpu_pg = cpu_seconds(pg_procs) - cpu_before[1]
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT count(*) FROM features.observations").fetchone()[0]
        print(f"ingest: {stored} stored, {duplicates} duplicates, {rejected} rejected "
              f"in {elapsed:.2f} s -> {stored / elapsed:8.0f} observations/s "
              f"(rows in table: {rows}, incl. warm-up)")
        per_obs = (cpu_features + cpu_pg) / stored * 1e3
        print(f"cpu per observation: features {cpu_features / stored * 1e3:.3f} ms + "
              f"postgres {cpu_pg / stored * 1e3:.3f} ms = {per_obs:.3f} ms "
              f"-> {(os.cpu_count() or 1) * 1e3 / per_obs:8.0f} observations/s on "
              f"{os.cpu_count()} idle cores")
        print(f"load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
              "(other processes on the machine compete for the cores)")
        return stored / elapsed


if __name__ == "__main__":
    main()
