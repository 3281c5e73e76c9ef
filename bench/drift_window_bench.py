"""What one drift evaluation's window read costs under a fleet's load: read whole, or held.

The drift monitor evaluates every active deployment every 5 s over its longest rule's
window (5 minutes). Read whole each time, a fleet's window of 120,000 rows (100 robots at
4 fps) is parsed again every evaluation; held (``HeldWindow``), each evaluation reads only
the rows ingested since the last (plus a 5 s margin), and the window whole every 5 minutes.

Fills a private features service (its own PostgreSQL cluster, as ``ingest_bench.py``
starts them) with N observations of one deployment over 5 minutes, then reads the window
whole twice, once held (its first read is whole), and then, after each of ``--top-ups``
ingests of ``--rate`` x 5 s new frames, held again: wall seconds, CPU seconds of this
process (the monitor's part) and of PostgreSQL per read. Last, the shipped rules' windows
cut from the held rows, as one evaluation cuts them.

    uv run python bench/drift_window_bench.py              # 120,000 rows, 400 frames/s
    uv run python bench/drift_window_bench.py -n 30000 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).parent))
import console_reads_bench  # noqa: E402  (fleet observations)
import ingest_bench  # noqa: E402  (the cluster, the service, ingest)
from edgeloop.features.drift.rules import load_rules  # noqa: E402
from edgeloop.features.drift.window import HeldWindow, Recent, fetch_recent  # noqa: E402
from edgeloop.platform.pgcluster import PostgresCluster  # noqa: E402

INTERVAL_S = 5


async def timed(label: str, read: Callable[[], Awaitable[Recent]], postgres: list) -> None:
    """Run ``read`` once and print its rows, wall and CPU seconds."""
    client, pg, began = time.process_time(), ingest_bench.cpu_seconds(postgres), \
        time.perf_counter()
    recent = await read()
    print(f"{label:44s} {len(recent.times):8d} {time.perf_counter() - began:7.3f} "
          f"{time.process_time() - client:8.3f} {ingest_bench.cpu_seconds(postgres) - pg:9.3f}")


async def evaluate(url: str, address: str, cluster: PostgresCluster, anchor: datetime,
                   later: list, per_top_up: int) -> None:
    """The reads, as the monitor makes them, on one connection."""
    since, until = anchor - timedelta(minutes=5), anchor + timedelta(minutes=1)
    async with AsyncConnectionPool(url, min_size=1, max_size=1, open=False) as pool:
        await pool.open(wait=True)
        postgres = ingest_bench.postgres_processes(cluster)  # its backend among them
        print(f"{'read':44s} {'rows':>8s} {'wall s':>7s} {'this CPU':>8s} {'postgres':>9s}")
        for _ in range(2):
            await timed("whole (as before)", lambda: fetch_recent(pool, "fleet", since, until),
                        postgres)
        held = HeldWindow("fleet")
        await timed("held: first read (whole)", lambda: held.read(pool, since, until), postgres)
        for start in range(0, len(later), per_top_up):
            await asyncio.to_thread(ingest_bench.send_all, address,
                                    later[start:start + per_top_up])
            await timed(f"held: top-up after {per_top_up} new frames",
                        lambda: held.read(pool, since, until), postgres)
        await timed("held: top-up, nothing new", lambda: held.read(pool, since, until), postgres)
        recent = await held.read(pool, since, until)
    rules = load_rules().rules
    began, cpu = time.perf_counter(), time.process_time()
    cut = [recent.window(anchor - rule.window, "1") for rule in rules]
    print(f"{f'the {len(rules)} rules windows cut from it':44s} "
          f"{sum(w.size for w in cut):8d} {time.perf_counter() - began:7.3f} "
          f"{time.process_time() - cpu:8.3f} {'':>9s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--observations", type=int, default=120_000,
                        help="rows in the 5-minute window before the top-ups")
    parser.add_argument("--rate", type=int, default=400, help="frames/s the top-ups add")
    parser.add_argument("--top-ups", type=int, default=4)
    args = parser.parse_args()
    per_top_up = args.rate * INTERVAL_S
    print(f"cpus={os.cpu_count()} rows={args.observations} top-ups={args.top_ups} x "
          f"{per_top_up} frames; load average before: {os.getloadavg()[0]:.2f}")
    frames = ingest_bench.render(50, "beige")
    with ingest_bench.features_on_private_cluster("edgeloop-window-bench-") as (
            cluster, service, url):
        total = args.observations + args.top_ups * per_top_up
        anchor = datetime.now(UTC)
        observations = console_reads_bench.fleet_observations(total, frames, anchor)
        began = time.perf_counter()
        ingest_bench.send_all(service.address, observations[:args.observations])
        print(f"filled {args.observations} rows in {time.perf_counter() - began:.0f} s")
        later = observations[args.observations:]
        # The filled frames (1.4 GB of JPEGs at 120,000) out of this process's heap: with
        # them alive, every garbage collection the reads trigger walks them, and the reads
        # cost the monitor twice what they cost in the features process.
        del observations
        gc.collect()
        asyncio.run(evaluate(url, service.address, cluster, anchor, later, per_top_up))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
