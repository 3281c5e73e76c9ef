"""A sweep's trials run on a worker node that joined the cluster with ``ray start --address``.

Real Ray, as a user scales out: a head node with no CPUs (so no trial can be placed there)
and one worker node with 2 CPUs, each its own ``ray start --block`` process
(:class:`edgeloop.testing.RayNodes`). The trainer's own Ray code (``start_ray`` joining
``EDGELOOP_RAY_ADDRESS``, then ``run_sweep``) runs in a separate Python process, as the
trainer service does: this test session keeps its own local Ray (``ray_info``) in the
pytest process. Each trial records the node it ran on in its ``sweep.trial.train`` span, and
the trace file the trials write (their exporter travels to the workers in the job's
runtime_env) must name the worker node for every trial.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgeloop.testing import RayNodes

SCRIPT = r"""
import json, os, sys
from pathlib import Path

import numpy as np
import ray
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.trainer import tune as sweeps
from edgeloop.trainer.raycluster import start_ray, stop_ray
from edgeloop.trainer.settings import Settings

folder = Path(sys.argv[1])
rng = np.random.default_rng(0)
np.savez(folder / "arrays.npz", images=rng.integers(0, 256, (24, 60, 80, 3), dtype=np.uint8),
         labels=rng.uniform(300, 3000, 24).astype(np.float32), split=np.array([0] * 16 + [1] * 8))
info = start_ray(Settings(database_url="unused", mlflow_tracking_uri="unused"))
try:
    values = sweeps.search_values(sweep_pb2.SearchSpace(
        learning_rates=[1e-3], batch_sizes=[8, 16], epochs=[1], architectures=["small"],
        filters=[4], dropouts=[0.1], dense_units=[8]))
    plan = sweeps.SweepPlan("worker-node", folder / "arrays.npz", values, 2,
                            sweeps.fit_resources(info.total_cpus, 2, 0, 0), 7, folder / "tune")

    class Hooks:
        def trial_started(self, *args): pass
        def trial_paused(self, *args): pass
        def epoch(self, *args): pass
        def trial_finished(self, *args): pass

    best = sweeps.run_sweep(plan, Hooks())
    nodes = [{"id": n["NodeID"], "resources": n["Resources"]} for n in ray.nodes() if n["Alive"]]
    print(json.dumps({"nodes": nodes, "best": best.trial_id, "started_here": info.started_here}))
finally:
    stop_ray(info)
"""


UV_RUN_SCRIPT = r"""
import json, sys
import ray
from edgeloop.trainer.raycluster import start_ray, stop_ray
from edgeloop.trainer.settings import Settings

info = start_ray(Settings(database_url="unused", mlflow_tracking_uri="unused"))
try:
    @ray.remote(num_cpus=1)
    def python() -> str:
        return sys.executable

    where = ray.get(python.remote(), timeout=300)  # under uv's wrapping it may never start
    print(json.dumps({"driver": sys.executable, "worker": where}))
finally:
    stop_ray(info)
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayNodes]:
    """A head without CPUs and a worker node with 2 (and an ``edgeloop_worker`` label)."""
    nodes = RayNodes(num_cpus=0).start()
    try:
        nodes.add_worker(num_cpus=2, resources={"edgeloop_worker": 1.0})
        yield nodes
    finally:
        nodes.stop()


def _trial_spans(trace_file: Path) -> list[dict]:
    spans = [json.loads(line) for line in trace_file.read_text().splitlines() if line.strip()]
    return [s for s in spans if s["name"] == "sweep.trial.train"]


def test_trials_run_on_the_worker_node(cluster: RayNodes, tmp_path: Path) -> None:
    trace_file = tmp_path / "trials.jsonl"
    env = {**os.environ, **cluster.env(),
           "EDGELOOP_RAY_ADDRESS": cluster.address,
           "EDGELOOP_RAY_AUTH_TOKEN_FILE": str(cluster.token_file),
           "EDGELOOP_TRACE_FILE": str(trace_file)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["started_here"] is False, "the trainer joined the cluster, it started no Ray"
    workers = [n["id"] for n in result["nodes"] if "edgeloop_worker" in n["resources"]]
    assert len(workers) == 1 and len(result["nodes"]) == 2
    trials = _trial_spans(trace_file)
    assert len(trials) == 2, f"one span per trial, got {len(trials)}"
    assert {t["attributes"]["edgeloop.ray_node_id"] for t in trials} == set(workers)


def test_under_uv_run_the_workers_run_the_trainers_python(cluster: RayNodes) -> None:
    """Started by ``uv run`` (``uv run edgeloop up``), Ray would wrap every worker in
    ``uv run`` in an uploaded copy of the folder, with a second environment built there."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    env = {**os.environ, **cluster.env(),
           "EDGELOOP_RAY_ADDRESS": cluster.address,
           "EDGELOOP_RAY_AUTH_TOKEN_FILE": str(cluster.token_file)}
    env.pop("RAY_ENABLE_UV_RUN_RUNTIME_ENV")  # as a user's shell would have it
    done = subprocess.run([uv, "run", "--frozen", "--no-sync", "python", "-c", UV_RUN_SCRIPT],
                          env=env, cwd=Path(__file__).parents[3], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["worker"] == result["driver"]
