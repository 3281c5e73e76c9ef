"""What the console's pages cost the features service under a fleet's load.

Fills a private features service (its own PostgreSQL cluster, as ``ingest_bench.py``
starts them) with N observations spread over the last five minutes: by default 120,000,
what 100 robots at 4 fps send in that time. Then times each read a console page makes,
the way it makes it now and the way it made it before (the fleet and deployment pages
read up to 20,000 observations of the window, oldest first, and counted them; the drift
plot read every observation of its window and thinned them itself; the frames page took
the last 30 of the first 20,000 of two minutes): wall-clock seconds, CPU seconds of the
features service, of PostgreSQL and of this client, rows on the wire, and how old the
newest frame a page saw was.

    uv run python bench/console_reads_bench.py                  # 120,000 observations
    uv run python bench/console_reads_bench.py -n 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psutil
from google.protobuf.timestamp_pb2 import Timestamp

sys.path.insert(0, str(Path(__file__).parent))
import ingest_bench  # noqa: E402  (a sibling script: the cluster, the service, ingest)
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb  # noqa: E402
from edgeloop.contracts.features.v1 import (  # noqa: E402
    feature_store_service_pb2_grpc,
    observation_pb2,
)

ROBOTS = 100
DEPLOYMENT = "fleet"
OLD_SCAN = 20_000
"""The cap of the console's former reads of a window."""
TIMELINE = timedelta(minutes=30)
TIMELINE_POINTS = 3000


def fleet_observations(n: int, frames: list[tuple[bytes, float | None]], now: datetime,
                       ) -> list[observation_pb2.Observation]:
    """``n`` frames of ``ROBOTS`` robots evenly over the 5 minutes up to ``now``, every
    tenth with a challenger's shadow answer."""
    span = timedelta(minutes=5) - timedelta(seconds=1)
    found = []
    for i in range(n):
        jpeg, sensor = frames[i % len(frames)]
        obs = observation_pb2.Observation(
            observation_id=str(uuid.uuid4()), device_id=f"robot-{i % ROBOTS:03d}",
            session_id="bench", seq=i // ROBOTS, deployment=DEPLOYMENT, data_group="bench",
            model_name="distance", model_version="1", arm="stable",
            prediction_mm=(sensor or 300.0) + 5.0, latency_ms=3.0,
            trace_id=uuid.uuid4().hex, jpeg=jpeg)
        if sensor is not None:
            obs.sensor_mm = sensor
        if i % 10 == 0:
            obs.shadow_predictions.add(arm="challenger", model_name="distance",
                                       model_version="2", prediction_mm=(sensor or 300.0) - 3.0)
        obs.time.FromDatetime(now - span + span * (i / max(n - 1, 1)))
        found.append(obs)
    return found


def _since(anchor: datetime, delta: timedelta) -> dict:
    """The window of ``delta`` before ``anchor`` (the fleet's newest frame), as a page
    asks for the window before now right after the fleet's last frame."""
    start = Timestamp()
    start.FromDatetime(anchor - delta)
    return {"start_time": start}


def read_observations(stub, **fields) -> tuple[int, datetime | None]:
    """Rows on the wire and the newest capture time among them."""
    rows, newest = 0, None
    for page in stub.ListObservations(pb.ListObservationsRequest(**fields), timeout=600):
        rows += len(page.observations)
        for obs in page.observations:
            moment = obs.time.ToDatetime(tzinfo=UTC)
            newest = moment if newest is None or moment > newest else newest
    return rows, newest


def summarize(stub, anchor: datetime) -> tuple[int, datetime | None]:
    """Entries on the wire and the newest frame of any device."""
    request = pb.SummarizeTrafficRequest()
    request.start_time.FromDatetime(anchor - timedelta(minutes=5))
    reply = stub.SummarizeTraffic(request, timeout=600)
    newest = max((d.last_frame.ToDatetime(tzinfo=UTC) for d in reply.devices), default=None)
    return len(reply.devices) + len(reply.arms), newest


def reads(stub, anchor: datetime) -> dict[str, Callable[[], tuple[int, datetime | None]]]:
    """Each page's read, before and now."""
    five, two = timedelta(minutes=5), timedelta(minutes=2)
    return {
        "fleet/deployment, before: 20,000 oldest of 5 min": lambda: read_observations(
            stub, limit=OLD_SCAN, **_since(anchor, five)),
        "fleet/deployment, now: SummarizeTraffic 5 min": lambda: summarize(stub, anchor),
        "drift plot, before: every frame of 30 min": lambda: read_observations(
            stub, deployments=[DEPLOYMENT], **_since(anchor, TIMELINE)),
        "drift plot, now: 3,000 spread over 30 min": lambda: read_observations(
            stub, deployments=[DEPLOYMENT], limit=TIMELINE_POINTS, spread=True,
            **_since(anchor, TIMELINE)),
        "frames page, before: 20,000 oldest of 2 min": lambda: read_observations(
            stub, limit=OLD_SCAN, **_since(anchor, two)),
        "frames page, now: 30 newest of 2 min": lambda: read_observations(
            stub, limit=30, newest_first=True, **_since(anchor, two)),
    }


def measure(read: Callable[[], tuple[int, datetime | None]], repeat: int, anchor: datetime,
            processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """Median wall and CPU seconds of ``repeat`` reads; rows and staleness of the last."""
    walls, cpus = [], {name: [] for name in [*processes, "client"]}
    rows, newest = 0, None
    for _ in range(repeat):
        before = {name: ingest_bench.cpu_seconds(procs) for name, procs in processes.items()}
        client, began = time.process_time(), time.perf_counter()
        rows, newest = read()
        walls.append(time.perf_counter() - began)
        cpus["client"].append(time.process_time() - client)
        for name, procs in processes.items():
            cpus[name].append(ingest_bench.cpu_seconds(procs) - before[name])
    stale = (anchor - newest).total_seconds() if newest else float("nan")
    return {"wall": statistics.median(walls), "rows": rows, "stale": stale,
            **{name: statistics.median(values) for name, values in cpus.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--observations", type=int, default=ROBOTS * 4 * 300)
    parser.add_argument("--repeat", type=int, default=3, help="reads of each kind (median)")
    parser.add_argument("--frames", type=int, default=50, help="distinct rendered frames")
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} observations={args.observations} repeat={args.repeat}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    frames = ingest_bench.render(args.frames, "beige")
    with ingest_bench.features_on_private_cluster("edgeloop-console-bench-") as (
            cluster, service, url):
        table = "a TimescaleDB hypertable" if ingest_bench.is_hypertable(url) else "a plain table"
        print(f"features.observations is {table}")
        began = time.perf_counter()
        anchor = datetime.now(UTC)
        observations = fleet_observations(args.observations, frames, anchor)
        stored, rejected = ingest_bench.send_all(service.address, observations)
        del observations  # out of the client's heap before its reads are timed
        gc.collect()
        filled_s = time.perf_counter() - began
        print(f"filled: {stored} stored, {rejected} rejected in {filled_s:.0f} s")
        processes = {"features": [psutil.Process(service.process.pid)],
                     "postgres": ingest_bench.postgres_processes(cluster)}
        print(f"{'read':52s} {'rows':>7s} {'wall s':>7s} {'features':>9s} {'postgres':>9s} "
              f"{'client':>7s} {'newest seen':>12s}")
        with grpc.insecure_channel(service.address,
                                   options=[("grpc.max_receive_message_length", -1)]) as channel:
            stub = feature_store_service_pb2_grpc.FeatureStoreServiceStub(channel)
            for name, read in reads(stub, anchor).items():
                m = measure(read, args.repeat, anchor, processes)
                print(f"{name:52s} {m['rows']:7d} {m['wall']:7.3f} {m['features']:9.3f} "
                      f"{m['postgres']:9.3f} {m['client']:7.3f} {m['stale']:10.0f} s")
        print("CPU columns: seconds per read (median); 'newest seen': how old the newest "
              "frame the read returned was, against the fleet's newest")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
