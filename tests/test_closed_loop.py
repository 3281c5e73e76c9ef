"""The closed loop end to end, shortened, on real services.

One private stack for the module: PostgreSQL (private cluster), the MLflow tracking
server, and the registry, features, trainer and gateway as processes, each with the
environment `edgeloop up` gives it (``Topology.service_env``) plus test settings: the
features service reads a rules file with short windows (``EDGELOOP_DRIFT_RULES``), and
the trainer runs two trials per sweep it is not told the size of (the monitor's sweeps).
With one trial and 120 red frames the retrained model lost to v1 at the registry's gate
on the mixed holdout (the gate doing its job, but no loop to test); trained from scratch,
the two-trial sweep still sometimes forgot beige (6.5 vs 3.3 mm) and the per-world gate
refused it. The monitor's sweep fine-tunes v1 (a warm start), as it does by default.
Nothing is faked: frames come from the scene simulator through the gateway's stream,
models are trained by Ray Tune and served by the gateway's embedded host.

- ``test_red_floor_closes_the_loop``: a beige model serves; the floor turns red while
  the robot drives live; the monitor fires, its sweep registers a version, the gate
  promotes it, the gateway switches, and the new version's predictions on red are
  better than the old version's right after the change.
- ``test_each_drift_kind_fires_its_own_rule``: the drift monitor with the real rules file
  (``rules.yaml``) on frames the gateway answered with the beige model and the features
  service measured: beige stays quiet over a long drive, beige-distant fires a label
  rule, green fires the saturation band, and an angled approach on beige fires the
  concept rule but not the saturation band. (services/features/tests/test_drift_monitor.py
  covers the state machine on synthetic statistics; this test covers the rules on real
  images, real statistics, real predictions and the real training reference.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from edgeloop.compose.demo import fleet
from edgeloop.compose.demo.config import DemoConfig, SweepSize
from edgeloop.compose.demo.drives import HistoryClock, replay
from edgeloop.compose.demo.loop import closed_loop, drift_events
from edgeloop.compose.demo.phases import Context, phase_one
from edgeloop.compose.demo.records import wait_for_records
from edgeloop.compose.demo.services import Endpoint, Services
from edgeloop.compose.demo.sweeps import get_sweep
from edgeloop.compose.stack import health
from edgeloop.compose.stack.processes import alive, spawn, stop_tree
from edgeloop.compose.stack.state import load_or_create_secrets
from edgeloop.compose.stack.topology import DEFAULT_PORTS, SERVICES, Topology
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.edge_client.scene.floor import floor_preset
from edgeloop.edge_client.scene.scenarios import Scenario, get_scenario
from edgeloop.platform import rayhead
from edgeloop.platform.objectstore import open_object_store
from edgeloop.platform.pgcluster import PostgresCluster, choose_data_dir
from edgeloop.testing import ServiceProcess, discard_stack_leftovers, free_port, wait_serving
from psycopg_pool import AsyncConnectionPool

# The module's stack start and the beige model's sweep count towards the first test's
# time and the stack's stop towards the last one's: on a busy 2-core machine starting Ray,
# TensorFlow and MLflow alone takes minutes.
pytestmark = pytest.mark.timeout(2400)
MODEL = "loop-distance"
SERVING = "loop-parking"
# Short windows so the loop closes in minutes: the thesis band, and hue's distribution.
SHORT_RULES = """\
version: 1
interval: 3s
rules:
  - name: saturation_band
    kind: covariate
    signal: window_mean
    statistic: saturation
    window: 30s
    min_samples: 40
    threshold: {band: [40, 60], follow_reference: true}
    pending: 6s
    cooldown: 10m
    description: 30-second mean saturation outside [40, 60].
  - name: js_hue
    kind: covariate
    signal: js_distance
    statistic: hue
    window: 20s
    min_samples: 40
    threshold: {max: 0.5}
    pending: 6s
    cooldown: 10m
    description: Hue distribution differs from training.
"""
# Small enough to finish in minutes, large enough that v1 is a model (not noise).
TEST_CONFIG = DemoConfig(collect_runs=14, validate_runs=2, drift_runs=2,
                         sweep=SweepSize(trials=1, epochs=(15,)), warmup_s=40.0,
                         red_timeout_s=420.0, after_switch_runs=2, sweep_timeout_s=600.0,
                         switch_timeout_s=180.0)


@dataclass
class Stack:
    """The running stack and where its parts are."""

    topology: Topology
    endpoints: dict[str, Endpoint]
    admin_token: str
    read_token: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL, MLflow and the four services with the test settings, stopped after."""
    state = tmp_path_factory.mktemp("loop")
    # Plaintext: this is about the loop; TLS is covered by test_tls_plane and the stack test.
    topology = Topology(state, {part: free_port() for part in DEFAULT_PORTS}, tls_mode="off")
    secrets = load_or_create_secrets(state)
    logs = topology.folder("logs")
    rules = state / "rules.yaml"
    rules.write_text(SHORT_RULES)
    cluster = PostgresCluster(data_dir=choose_data_dir(state / "postgres"),
                              port=topology.ports["postgres"], durable=False)
    # No consolidation (a second fine-tune once the red floor has 3x the data): it could
    # replace the retrained version during the measured runs; the monitor tests cover it.
    # 8 epochs for the drift retrain instead of 20: the loop, not the recovery's depth, is
    # under test here (the trainer's tests cover the rung's CPU grant that longer ones get),
    # and it takes ~30 s off the suite's longest test.
    extra = {"features": {"EDGELOOP_DRIFT_RULES": str(rules),
                          "EDGELOOP_DRIFT_RETRAIN_CONSOLIDATE_FACTOR": "0",
                          "EDGELOOP_DRIFT_RETRAIN_EPOCHS": "8"},
             "trainer": {"EDGELOOP_DEFAULT_TRIALS": "2"}}
    processes: list[ServiceProcess] = []
    mlflow_pid = ray_pid = None
    # Everything started is stopped on every path, also when a later step fails (or the
    # cluster's own start fails half-way, leaving a server running).
    try:
        cluster.start()
        cluster.ensure_database("edgeloop")
        mlflow_pid = spawn(topology.mlflow_command(), topology.mlflow_env(), logs / "mlflow.log")
        # The Ray head node the trainer joins, as `edgeloop up` starts it.
        ray_command, ray_env = topology.ray_head_command()
        ray_pid = spawn(ray_command, ray_env, logs / "ray.log")
        assert health.wait_until(lambda: health.http_status(f"{topology.mlflow_uri}/health"),
                                 180.0, lambda: False) == "SERVING", "MLflow did not start"
        token = topology.ray_token_file.read_text().strip()
        assert health.wait_until(
            lambda: rayhead.dashboard_status(topology.ray_head.dashboard_url, token),
            900.0, lambda: not alive(ray_pid)) == "SERVING", "the Ray head did not start"
        # All at once, like `edgeloop up`: each waits for the ones it needs on its own.
        for service in SERVICES:
            env = {**topology.service_env(service, secrets), **extra.get(service, {})}
            process = ServiceProcess(f"edgeloop.{service}", env, logs / f"{service}.log")
            processes.append(process)
            process.start(wait=False)
        for process in processes:
            _wait_started(process)
        endpoints = {s: Endpoint(s, topology.address(s), str(logs / f"{s}.log")) for s in SERVICES}
        yield Stack(topology, endpoints, secrets["admin_token"], secrets["read_token"])
    finally:
        for process in reversed(processes):
            process.stop(timeout_s=60.0)
        if ray_pid is not None:
            stop_tree(ray_pid, timeout_s=40.0)
        if mlflow_pid is not None:
            stop_tree(mlflow_pid, root_first=False)
        cluster.stop()
        discard_stack_leftovers(state)


def _wait_started(process: ServiceProcess, timeout_s: float = 420.0) -> None:
    """Wait until SERVING; a process that exits while starting is started once more.

    On a loaded 2-core machine Ray's start-up in the trainer can time out (and its own
    retry then finds the dashboard port still held); the loop, not start-up, is under test.
    """
    for attempt in (1, 2):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.process is not None and process.process.poll() is not None:
                break
            try:
                wait_serving(process.address, timeout_s=5.0)
                return
            except TimeoutError:
                continue
        else:
            raise TimeoutError(f"{process.module} not SERVING after {timeout_s:.0f} s:\n"
                               f"{process.log_tail()}")
        if attempt == 2:
            raise RuntimeError(f"{process.module} exited while starting:\n{process.log_tail()}")
        process.start(wait=False)


@pytest.fixture(scope="module")
def beige_model(stack: Stack) -> Context:
    """Phase 1 of the demo on the test stack: v1 trained on beige serves ``SERVING``."""
    lines: list[str] = []

    async def train() -> Context:
        services = Services(stack.endpoints, stack.admin_token)
        ctx = Context(services, TEST_CONFIG, lines.append, MODEL, "loop-collect", SERVING, "loop")
        try:
            result = await phase_one(ctx)
        finally:
            await services.close()
        assert result.promoted and ctx.champion == "1", lines
        assert result.after is not None and result.after.count > 0, lines
        return ctx

    return asyncio.run(train())


@pytest.fixture
async def services(stack: Stack) -> AsyncIterator[Services]:
    opened = Services(stack.endpoints, stack.admin_token)
    yield opened
    await opened.close()


def _context(beige_model: Context, services: Services, lines: list[str]) -> Context:
    return replace(beige_model, services=services, progress=lines.append,
                   clock=HistoryClock())


async def test_red_floor_closes_the_loop(stack: Stack, beige_model: Context,
                                        services: Services) -> None:
    from edgeloop.features.settings import Settings as FeaturesSettings

    assert "drift_rules" in FeaturesSettings.model_fields, \
        "the features service has no EDGELOOP_DRIFT_RULES setting: its monitor cannot be " \
        "given the short windows this test needs"
    lines: list[str] = []
    ctx = _context(beige_model, services, lines)
    phase, loop = await closed_loop(ctx)
    report = "\n".join(lines)

    # The monitor fired on the red floor, after the change and not before it.
    assert loop.false_alarms == [], report
    assert loop.red_at_s is not None and loop.fired_at_s is not None, report
    assert loop.fired_at_s > loop.red_at_s, report
    events = [e for e in await drift_events(ctx) if e.rule in ("saturation_band", "js_hue")]
    first = next(e for e in events if e.event_id == loop.event_id)
    assert first.kind == observation_pb2.DRIFT_KIND_COVARIATE and first.model_version == "1"

    # Its sweep was started by the event, registered a version and the gate promoted it.
    assert first.sweep_id, report
    sweep = await get_sweep(services, first.sweep_id)
    assert sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep.error
    assert sweep.trigger.startswith("drift:") and sweep.deployment == SERVING
    assert sweep.warm_start_version == "1", "the monitor fine-tunes the serving version"
    assert sweep.promoted, sweep.promotion_note
    new = sweep.model_version
    assert new not in ("", "1")
    assert await fleet.champion(services, MODEL) == new
    assert await fleet.resolved_version(services, SERVING) == new

    # The gateway switched: the last runs were answered by the new version only ...
    assert phase.version_after == new and loop.serving_at_s is not None, report
    assert loop.serving_at_s >= (loop.promoted_at_s or 0.0), report
    tail = [p for p in loop.timeline
            if p.t_s > loop.serving_at_s + 15 and p.prediction_mm is not None]
    assert tail and {p.model_version for p in tail} == {new}, report

    # ... moved the new version to LiteRT once the registry had converted it to TFLite ...
    await _logged(stack.topology.folder("logs") / "gateway.log", "model now runs on LiteRT",
                  new)

    # ... and better on red than the old version right after the change.
    assert phase.before is not None and phase.before.count >= 20, report
    assert phase.after is not None and phase.after.count >= 20, report
    assert phase.after.mae_mm < phase.before.mae_mm, report

    # Lineage and traces: from the new version back to the drift that made it (issue #8).
    await _check_lineage_and_traces(stack, ctx, sweep)


async def _check_lineage_and_traces(stack: Stack, ctx: Context, sweep: sweep_pb2.Sweep) -> None:
    """`edgeloop lineage` shows the whole chain, and the sweep's trace holds each trial."""
    from click.testing import CliRunner
    from edgeloop.compose.cli import cli
    from edgeloop.contracts.registry.v1 import deployment_pb2
    from edgeloop.contracts.registry.v1 import registry_service_pb2 as rpb
    from edgeloop.platform.span_files import read_spans, trace_tree

    trigger_event = sweep.trigger.removeprefix("drift:")
    env = {f"EDGELOOP_{name.upper()}_ADDR": endpoint.address
           for name, endpoint in stack.endpoints.items()}
    env["EDGELOOP_ADMIN_TOKEN"] = stack.admin_token
    result = await asyncio.to_thread(CliRunner().invoke, cli,
                                     ["lineage", f"{MODEL}@{sweep.model_version}"], env=env)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for expected in (f"drift event {trigger_event}", f"sweep {sweep.sweep_id}",
                     f"dataset snapshot {sweep.dataset.snapshot_id}",
                     f"MLflow parent run {sweep.mlflow_parent_run_id}",
                     *(f"run {t.mlflow_run_id}" for t in sweep.trials),
                     f"fine-tuned from {MODEL}@1",
                     f"registered version {sweep.model_version}", f"{SERVING} (arm stable)",
                     "first predictions it served"):
        assert expected in text, f"{expected!r} missing from:\n{result.output}"

    # Spans are exported in batches: wait for the trainer's trial spans (one per trial, also
    # for a trial the scheduler stopped early; a span that never comes still fails).
    for _ in range(240):
        spans = list(read_spans(stack.topology.state_dir / "traces"))
        names = [s.name for root in trace_tree(spans, sweep.trace_id) for s in _walk(root)]
        if names.count("sweep.trial") >= len(sweep.trials):
            break
        await asyncio.sleep(0.5)
    assert {"sweep", "sweep.snapshot", "sweep.tune", "sweep.log_model",
            "sweep.register_version"} <= set(names), names
    assert names.count("sweep.trial") == len(sweep.trials), names
    version = await ctx.services.registry.GetModelVersion(rpb.GetModelVersionRequest(
        model_name=MODEL, selector=deployment_pb2.VersionSelector(version=sweep.model_version)),
        metadata=ctx.services.admin, timeout=30)
    assert version.version.tags["trace_id"] == sweep.trace_id
    # The model's first sweep asked for a champion there was none of: an answer, not an error.
    first = await ctx.services.registry.GetModelVersion(rpb.GetModelVersionRequest(
        model_name=MODEL, selector=deployment_pb2.VersionSelector(version="1")),
        metadata=ctx.services.admin, timeout=30)
    first_spans = [s for root in trace_tree(spans, first.version.tags["trace_id"])
                   for s in _walk(root)]
    assert "sweep.register_version" in {s.name for s in first_spans}, first_spans
    assert [s.name for s in first_spans if s.status == "ERROR"] == []
    # The trainer has a token of its own: its registration and promotion are its, not admin's.
    history = await ctx.services.registry.ListHistory(rpb.ListHistoryRequest(
        subject=f"model/{MODEL}"), metadata=ctx.services.admin, timeout=30)
    actors = {record.actor for record in history.records if record.action in ("register",
                                                                               "promote")}
    assert actors == {"service:trainer"}, [(r.action, r.actor) for r in history.records]
    for _ in range(360):  # the monitor records the sweep's trace id once it sees it finish
        event = next(e for e in await drift_events(ctx) if e.event_id == trigger_event)
        if event.sweep_trace_id == sweep.trace_id:
            break
        await asyncio.sleep(0.5)
    assert event.sweep_trace_id == sweep.trace_id


async def _logged(log: Path, message: str, version: str, timeout_s: float = 300.0) -> None:
    """Wait for a JSON log line ``message`` about ``version`` (the registry converts to
    TFLite in the background: a minute or more on a busy 2-core machine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if message in line and json.loads(line).get("version") == version:
                return
        await asyncio.sleep(1.0)
    raise AssertionError(f"no {message!r} for version {version} in {log} within {timeout_s} s")


def _walk(span: Any) -> list[Any]:
    return [span, *(s for child in span.children for s in _walk(child))]


async def test_each_drift_kind_fires_its_own_rule(stack: Stack, beige_model: Context,
                                                  services: Services) -> None:
    from edgeloop.features.drift.deployments import ActiveDeployment
    from edgeloop.features.drift.monitor import DriftMonitor
    from edgeloop.features.drift.references import ReferenceCache
    from edgeloop.features.drift.rules import load_rules

    beige_angle = Scenario("beige-angle", floor_preset("beige"), 0, 250, max_yaw_deg=30)
    worlds = {"beige": (get_scenario("beige"), 60),
              "beige-distant": (get_scenario("beige-distant"), 25),
              "green": (get_scenario("green"), 25), "beige-angle": (beige_angle, 25)}
    # Every world is driven over the same stretch of past time (hours ago, so the service's
    # own monitor never sees it); the monitor under test steps a simulated clock across it.
    start = datetime.now(UTC) - timedelta(hours=3)
    ends = {}
    for name, (scenario, runs) in worlds.items():
        deployment = f"kinds-{name}"
        await fleet.create_deployment(services, deployment, "kinds", MODEL)
        await fleet.pin_version(services, deployment, "1")
        device = await fleet.register_device(services, f"robot-{name}", deployment)
        clock = HistoryClock(start + timedelta(hours=6))
        drive = await replay(services.gateway_addr, device, scenario, runs, 7, 4.0, clock)
        records = await wait_for_records(services, deployment, device.device_id, drive.start,
                                         drive.end, drive.expected_records)
        assert {r.model_version for r in records if r.prediction_mm is not None} == {"1"}
        ends[name] = max(r.time for r in records)
        # Off before the monitor under test writes events: the service's own monitor
        # watches active deployments and would answer those events with sweeps.
        await fleet.activate(services, deployment, False)

    class Pinned:
        async def active(self) -> list[ActiveDeployment]:
            return [ActiveDeployment(f"kinds-{name}", MODEL, "1") for name in worlds]

    from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc

    references = ReferenceCache(registry_service_pb2_grpc.RegistryServiceStub(
        services.channels["registry"]), stack.read_token,
        open_object_store(str(stack.topology.folder("objects")), "", "", "", "edgeloop", False))
    now = [start]
    async with AsyncConnectionPool(stack.topology.database_url, min_size=1, max_size=4,
                                   open=False) as pool:
        monitor = DriftMonitor(pool, load_rules(), Pinned(), references, None,  # type: ignore[arg-type]
                               clock=lambda: now[0])
        while now[0] < max(ends.values()) + timedelta(seconds=30):
            now[0] += timedelta(seconds=15)
            await monitor.evaluate_once()
        fired = {name: {(e.rule, e.kind) for e in await monitor.events.list(f"kinds-{name}")}
                 for name in worlds}

    assert await references.get(MODEL, "1") is not None, "v1 has no training reference"
    assert fired["beige"] == set(), f"false alarm on the training world: {fired['beige']}"
    assert any(kind == "label" for _, kind in fired["beige-distant"]), fired
    assert ("saturation_band", "covariate") in fired["green"], fired
    assert any(kind == "concept" for _, kind in fired["beige-angle"]), fired
    assert all(rule != "saturation_band" for rule, _ in fired["beige-angle"]), fired



def test_the_services_logs_hold_only_their_own_json_lines(stack: Stack,
                                                          beige_model: Context) -> None:
    """After this module's sweeps (MLflow runs and model logging, Ray Tune, TensorFlow in
    the trial workers and the registration's child), registrations (the registry's
    TensorFlow child checks signatures and runs the TFLite converter) and served frames,
    every line of the trainer's, the gateway's, the features service's and the registry's
    logs is one of their JSON records: nothing a library wrote in its own format (Tune's
    tables, MLflow's "View run" prints and progress bars, Python warnings, TensorFlow's C++
    lines)."""
    for service in ("trainer", "gateway", "features", "registry"):
        lines = Path(stack.endpoints[service].log).read_text(errors="replace").splitlines()
        strays = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                strays.append(line)
                continue
            assert record["service"] == service, line
        assert len(lines) > 10, f"{service} logged almost nothing"
        assert not strays, f"{service}: {len(strays)} lines not its own, e.g. {strays[:8]}"
