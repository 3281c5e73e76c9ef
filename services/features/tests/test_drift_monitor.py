"""The drift monitor on a real PostgreSQL: pending → firing → retraining → resolved.

Observations are inserted straight into the real ``features.observations`` table
(the schema applied exactly as the service applies it). The registry's deployment
list and the model references are given through the monitor's seams; the trainer is
an in-test server implementing the TrainerService contract (a contract double: the
end-to-end loop with the real trainer lives in the cross-service tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2, trainer_service_pb2_grpc
from edgeloop.features.drift import retraining, window
from edgeloop.features.drift.deployments import ActiveDeployment
from edgeloop.features.drift.monitor import DriftMonitor
from edgeloop.features.drift.retraining import Retrainer
from edgeloop.features.drift.rules import load_rules
from edgeloop.features.schema import Policies, ensure_schema
from edgeloop.features.statistics import STAT_NAMES
from edgeloop.testing import free_port
from grpc import aio
from psycopg_pool import AsyncConnectionPool

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
FPS = 4
WORLDS = {"beige": {"saturation": 50.0, "hue": 18.0, "mean_r": 180.0},
          "red": {"saturation": 71.0, "hue": 170.0, "mean_r": 200.0},
          # beige's hue and red channel, red's saturation: only the saturation rules see it
          "warm": {"saturation": 71.0, "hue": 18.0, "mean_r": 180.0},
          # a floor neither version was trained on
          "green": {"saturation": 30.0, "hue": 60.0, "mean_r": 90.0}}


def _rows(world: str, start: datetime, seconds: int, version: str, rng: np.random.Generator,
          error_mm: float = 5.0, deployment: str = "parking", labelled: bool = True,
          data_group: str = "garage") -> list[tuple[Any, ...]]:
    rows = []
    for i in range(seconds * FPS):
        stats = {name: 100.0 for name in STAT_NAMES}
        stats.update({k: v + rng.normal(0, 3) for k, v in WORLDS[world].items()})
        stats["keypoints"] = 100
        sensor = float(rng.uniform(20, 240))
        rows.append((uuid.uuid4(), start + timedelta(seconds=i / FPS), "car-1", deployment,
                     "distance", version, sensor + error_mm, sensor if labelled else None,
                     error_mm if labelled else None, "k", 1, 320, 240, data_group,
                     *[stats[n] for n in STAT_NAMES]))
    return rows


def _insert(dsn: str, rows: list[tuple[Any, ...]]) -> None:
    columns = ("observation_id, time, device_id, deployment, model_name, model_version, "
               "prediction_mm, sensor_mm, error_mm, image_key, image_bytes, width, height, "
               "data_group, "
               + ", ".join(STAT_NAMES))
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cursor,
        cursor.copy(f"COPY features.observations ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _reference(worlds: list[str], holdout_mae: float = 5.0) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    groups = {}
    for world in worlds:
        stats = {}
        for name in STAT_NAMES:
            centre = WORLDS[world].get(name, 100.0)
            values = (centre + rng.normal(0, 3, 600) if name in WORLDS[world]
                      else np.full(600, 100.0))
            counts, edges = np.histogram(values, bins=20)
            stats[name] = {"mean": float(values.mean()), "std": float(values.std()),
                           "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}
        labels = rng.uniform(20, 240, 600)
        counts, edges = np.histogram(labels, bins=20)
        groups[world] = {"stats": stats, "label_histogram": {"edges": edges.tolist(),
                                                             "counts": counts.tolist()}}
    first = groups[worlds[0]]
    return {**first, "groups": groups, "label_min_mm": 20.0, "label_max_mm": 240.0,
            "holdout_mae_mm": holdout_mae, "snapshot_id": f"snap-{'-'.join(worlds)}"}


class Deployments:
    """The monitor's deployment seam: one active deployment whose version tests move."""

    def __init__(self, name: str = "parking") -> None:
        self.version = "1"
        self.name = name

    async def active(self) -> list[ActiveDeployment]:
        return [ActiveDeployment(self.name, "distance", self.version)]


class References:
    """The monitor's reference seam: version 1 knows beige, version 2 beige and red."""

    def __init__(self, **worlds: list[str]) -> None:
        worlds = worlds or {"1": ["beige"], "2": ["beige", "red"]}
        self.by_version = {version: _reference(known) for version, known in worlds.items()}

    async def get(self, model_name: str, version: str) -> dict[str, Any] | None:
        return self.by_version.get(version)

    def snapshot_of(self, model_name: str, version: str) -> str:
        return self.by_version[version]["snapshot_id"]


class Trainer(trainer_service_pb2_grpc.TrainerServiceServicer):
    """TrainerService contract double: records sweeps; a sweep succeeds when told to."""

    def __init__(self) -> None:
        self.started: list[trainer_service_pb2.StartSweepRequest] = []
        self.finished: set[str] = set()
        """Sweeps that have succeeded (and promoted version 2)."""
        self.refused: set[str] = set()
        """Sweeps that have succeeded and whose version 2 the gate refused."""
        self.can_fine_tune = True
        self.hang_first = False
        """The first StartSweep never answers (its caller's deadline passes)."""
        self.cancelled: set[str] = set()
        self.can_cancel = True
        self.versions: dict[str, str] = {}
        """The version a sweep registers (default 2)."""

    async def StartSweep(self, request, context):  # noqa: N802 - gRPC method name
        self.started.append(request)
        if self.hang_first and len(self.started) == 1:
            await asyncio.Event().wait()
        if request.HasField("warm_start") and not self.can_fine_tune:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "warm_start: version 1 of 'distance' has no training weights")
        return trainer_service_pb2.StartSweepResponse(sweep=sweep_pb2.Sweep(
            sweep_id=f"sweep-{len(self.started)}", state=sweep_pb2.SWEEP_STATE_QUEUED,
            trace_id="ab" * 16))

    async def CancelSweep(self, request, context):  # noqa: N802
        if not self.can_cancel:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "trainer restarting")
        self.cancelled.add(request.sweep_id)
        return trainer_service_pb2.CancelSweepResponse(sweep=sweep_pb2.Sweep(
            sweep_id=request.sweep_id, state=sweep_pb2.SWEEP_STATE_CANCELLED))

    async def GetSweep(self, request, context):  # noqa: N802
        done = request.sweep_id in self.finished
        refused = request.sweep_id in self.refused
        state = (sweep_pb2.SWEEP_STATE_SUCCEEDED if done or refused
                 else sweep_pb2.SWEEP_STATE_CANCELLED if request.sweep_id in self.cancelled
                 else sweep_pb2.SWEEP_STATE_RUNNING)
        return trainer_service_pb2.GetSweepResponse(sweep=sweep_pb2.Sweep(
            sweep_id=request.sweep_id, state=state,
            model_version=self.versions.get(request.sweep_id, "2"), promoted=done,
            promotion_note="refused: forgets beige" if refused else "",
            trace_id="cd" * 16 if done else ""))


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await ensure_schema(conn, Policies())
    async with AsyncConnectionPool(database_url, min_size=1, max_size=4, open=False) as opened:
        yield opened


@pytest.fixture
async def trainer() -> AsyncIterator[tuple[Trainer, trainer_service_pb2_grpc.TrainerServiceStub]]:
    servicer = Trainer()
    server = aio.server()
    trainer_service_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield servicer, trainer_service_pb2_grpc.TrainerServiceStub(channel)
    await server.stop(0)


def _monitor(pool: AsyncConnectionPool, deployments: Deployments, references: References,
             stub: trainer_service_pb2_grpc.TrainerServiceStub, clock: list[datetime],
             consolidate_factor: float = 0.0, shortfall_ratio: float = 0.0) -> DriftMonitor:
    # The synthetic drives are one continuous stream (no pauses between runs): one run.
    retrainer = Retrainer(pool, stub, references, min_samples=200, min_runs=1,  # type: ignore[arg-type]
                          trials=2, epochs=8, max_samples=500,
                          consolidate_factor=consolidate_factor, shortfall_ratio=shortfall_ratio)
    return DriftMonitor(pool, load_rules(), deployments, references, retrainer,  # type: ignore[arg-type]
                        clock=lambda: clock[0])


async def test_red_floor_fires_retrains_and_resolves(database_url: str, pool: AsyncConnectionPool,
                                                     trainer: tuple[Trainer, Any]) -> None:
    servicer, stub = trainer
    rng = np.random.default_rng(1)
    _insert(database_url, _rows("beige", T0, 600, "1", rng))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=10), 600, "1", rng, error_mm=40.0))
    deployments, references, clock = Deployments(), References(), [T0 + timedelta(minutes=10)]
    monitor = _monitor(pool, deployments, references, stub, clock)

    await monitor.evaluate_once()
    states = {t.rule.name: t for t in monitor.states("parking")}
    assert states["saturation_band"].status == "ok"
    assert 45 < states["saturation_band"].signal.value < 55
    assert all(t.status in ("ok", "insufficient") for t in states.values()), \
        {n: (t.status, t.signal) for n, t in states.items()
         if t.status not in ("ok", "insufficient")}

    # Half a minute into the red floor the CUSUM rules fire; five minutes in, the 5-minute
    # mean is red too: pending, then firing.
    for minutes in (10.5, 15, 15.5, 16.1):
        clock[0] = T0 + timedelta(minutes=minutes)
        await monitor.evaluate_once()
    states = {t.rule.name: t for t in monitor.states("parking")}
    assert states["saturation_band"].status == "firing"
    assert states["cusum_saturation"].status == "firing"
    # The error is 8x the holdout MAE, but on a floor the model never saw: covariate
    # shift explains it, so the concept rules wait instead of firing.
    assert states["concept_mae_ratio"].status == "held"
    assert states["concept_error_cusum"].status == "held"
    events = await monitor.events.list("parking", open_only=True)
    assert {"saturation_band", "cusum_saturation", "js_hue"} <= {e.rule for e in events}
    assert not [e for e in events if e.kind == "concept"]
    saturation = next(e for e in events if e.rule == "saturation_band")
    assert saturation.values["value"] > 60 and saturation.model_version == "1"
    # The CUSUM dates the change: its event starts at the first red frame, not a window ago.
    cusum = next(e for e in events if e.rule == "cusum_saturation")
    assert abs(cusum.window_start - (T0 + timedelta(minutes=10))) <= timedelta(seconds=1)

    # One sweep for the deployment, on the new world's data plus the old snapshot.
    assert len(servicer.started) == 1
    request = servicer.started[0]
    assert request.trigger.startswith("drift:") and request.promote
    assert list(request.data.deployments) == ["parking"]
    assert list(request.data.include_snapshots_of) == ["snap-beige"]
    assert request.data.max_observations == 500, "the newest of the new world, not all of it"
    # It fine-tunes the serving version rather than forgetting the old world from scratch,
    # in a small sweep: a drift retrain is urgent.
    assert request.warm_start.version == "1"
    assert request.num_trials == 2 and list(request.search_space.epochs) == [8]
    # The new world's data starts where the first event dated the change.
    assert abs(request.data.start_time.ToDatetime(tzinfo=UTC)
               - (T0 + timedelta(minutes=10))) <= timedelta(seconds=1)
    assert all(e.sweep_id == "sweep-1"
               for e in await monitor.events.list("parking", open_only=True))
    clock[0] += timedelta(seconds=15)
    await monitor.evaluate_once()
    assert len(servicer.started) == 1, "one sweep at a time per deployment"

    # The sweep promotes version 2 (trained on beige and red): the rules go quiet.
    servicer.finished.add("sweep-1")
    clock[0] += timedelta(seconds=15)
    await monitor.evaluate_once()
    assert all("version 2 promoted" in e.note for e in await monitor.events.list("parking"))
    assert all(e.sweep_trace_id == "cd" * 16 for e in await monitor.events.list("parking"))
    deployments.version = "2"
    _insert(database_url, _rows("red", T0 + timedelta(minutes=20), 300, "2", rng))
    clock[0] = T0 + timedelta(minutes=25)
    await monitor.evaluate_once()
    assert await monitor.events.list("parking", open_only=True) == []
    states = {t.rule.name: t for t in monitor.states("parking")}
    # Quiet because version 2 knows red, not because of a cooldown: version 1's events
    # resolved, and their cooldown belongs to version 1.
    assert states["saturation_band"].status == "ok"
    assert states["cusum_hue"].status == "ok"
    assert len(servicer.started) == 1

    # A floor version 2 never saw, within 15 minutes of version 1's events: version 2 is
    # judged afresh and the CUSUM rules that fired for version 1 fire for it at once.
    resolved_v1 = {e.rule for e in await monitor.events.list("parking")
                   if e.model_version == "1" and e.state == "resolved"}
    assert "cusum_hue" in resolved_v1
    _insert(database_url, _rows("green", T0 + timedelta(minutes=25), 60, "2", rng))
    clock[0] = T0 + timedelta(minutes=26)
    await monitor.evaluate_once()
    green = await monitor.events.list("parking", open_only=True)
    assert "cusum_hue" in {e.rule for e in green}
    assert all(e.model_version == "2" for e in green)

    # Within one version the cooldown holds: red again until the CUSUMs are back at 0 (the
    # green events resolve), then green again: cusum_hue stays in its cooldown.
    _insert(database_url, _rows("red", T0 + timedelta(minutes=26), 180, "2", rng))
    clock[0] = T0 + timedelta(minutes=29)
    await monitor.evaluate_once()
    assert "cusum_hue" not in {e.rule for e in await monitor.events.list("parking",
                                                                          open_only=True)}
    _insert(database_url, _rows("green", T0 + timedelta(minutes=29), 60, "2", rng))
    clock[0] = T0 + timedelta(minutes=30)
    await monitor.evaluate_once()
    states = {t.rule.name: t for t in monitor.states("parking")}
    assert states["cusum_hue"].status == "cooldown", states["cusum_hue"]
    assert "cusum_hue" not in {e.rule for e in await monitor.events.list("parking",
                                                                          open_only=True)}


async def test_a_deployment_whose_evaluation_fails_does_not_blind_the_monitor_to_the_others(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any],
        caplog: pytest.LogCaptureFixture) -> None:
    servicer, stub = trainer

    class TwoDeployments(Deployments):
        async def active(self) -> list[ActiveDeployment]:
            return [ActiveDeployment("broken", "distance", "9"), *await super().active()]

    class FailingReferences(References):
        async def get(self, model_name: str, version: str) -> dict[str, Any] | None:
            if version == "9":
                raise RuntimeError("reference.json of version 9 is corrupt")
            return await super().get(model_name, version)

    rng = np.random.default_rng(1)
    _insert(database_url, _rows("beige", T0, 600, "1", rng))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=10), 60, "1", rng, error_mm=40.0))
    clock = [T0 + timedelta(minutes=10, seconds=30)]
    monitor = _monitor(pool, TwoDeployments(), FailingReferences(), stub, clock)
    await monitor.evaluate_once()
    assert {e.rule for e in await monitor.events.list("parking", open_only=True)} \
        >= {"cusum_saturation"}, "the failing deployment comes first; the others are evaluated"
    failed = [r for r in caplog.records
              if "drift evaluation of this deployment failed" in r.message]
    assert failed and failed[0].exc_info and "version 9" in str(failed[0].exc_info[1])


async def test_a_version_that_cannot_be_fine_tuned_is_retrained_from_scratch(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    servicer, stub = trainer
    servicer.can_fine_tune = False
    rng = np.random.default_rng(4)
    _insert(database_url, _rows("beige", T0, 600, "1", rng))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=10), 600, "1", rng, error_mm=40.0))
    clock = [T0 + timedelta(minutes=10)]
    monitor = _monitor(pool, Deployments(), References(), stub, clock)
    for minutes in (10, 10.5, 15, 15.5, 16.1):
        clock[0] = T0 + timedelta(minutes=minutes)
        await monitor.evaluate_once()

    assert [r.HasField("warm_start") for r in servicer.started] == [True, False]
    # from scratch, a sweep needs the trainer's default epochs, not a fine-tune's few
    assert list(servicer.started[1].search_space.epochs) == []
    assert all(e.sweep_id == "sweep-2" for e in await monitor.events.list("parking"))


async def test_a_start_that_timed_out_is_retried_with_the_same_request_id(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer may have queued the sweep before the deadline: the retry must say so."""
    servicer, stub = trainer
    servicer.hang_first = True
    monkeypatch.setattr(retraining, "START_SWEEP_DEADLINE_S", 0.5)
    rng = np.random.default_rng(5)
    _insert(database_url, _rows("beige", T0, 600, "1", rng))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=10), 600, "1", rng, error_mm=40.0))
    clock = [T0 + timedelta(minutes=10)]
    monitor = _monitor(pool, Deployments(), References(), stub, clock)
    await _evaluate_at(monitor, clock, 10, 10.5)
    events = await monitor.events.list("parking", open_only=True)
    assert len(servicer.started) == 1 and events and not any(e.sweep_id for e in events)

    await _evaluate_at(monitor, clock, 10.6)
    assert len(servicer.started) == 2
    first, retry = servicer.started
    assert first.request_id == retry.request_id
    assert first.request_id.startswith("drift:parking:")
    assert all(e.sweep_id == "sweep-2" for e in await monitor.events.list("parking"))


async def test_the_window_reads_in_chunks_the_same_rows(
        database_url: str, pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    _insert(database_url, _rows("beige", T0, 10, "1", rng))
    _insert(database_url, _rows("beige", T0 + timedelta(seconds=10), 5, "2", rng,
                                labelled=False))
    whole = await window.fetch_recent(pool, "parking", T0, T0 + timedelta(minutes=1))
    monkeypatch.setattr(window, "CHUNK_ROWS", 7)
    chunked = await window.fetch_recent(pool, "parking", T0, T0 + timedelta(minutes=1))
    empty = await window.fetch_recent(pool, "nowhere", T0, T0 + timedelta(minutes=1))

    assert len(whole.times) == 15 * FPS and list(chunked.times) == list(whole.times)
    assert list(chunked.model_versions) == list(whole.model_versions)
    assert sorted(set(whole.model_versions)) == ["1", "2"]
    for name, column in whole.columns.items():
        assert np.array_equal(chunked.columns[name], column, equal_nan=True), name
    assert np.isnan(whole.columns["sensor_mm"][10 * FPS:]).all(), "no label: NaN"
    assert not np.isnan(whole.columns["sensor_mm"][:10 * FPS]).any()
    assert len(empty.times) == 0 and all(len(c) == 0 for c in empty.columns.values())


def _same(a: window.Recent, b: window.Recent) -> bool:
    return (list(a.times) == list(b.times) and list(a.model_versions) == list(b.model_versions)
            and all(np.array_equal(a.columns[n], b.columns[n], equal_nan=True)
                    for n in a.columns))


async def test_a_held_window_topped_up_reads_what_a_whole_read_reads(
        database_url: str, pool: AsyncConnectionPool) -> None:
    """Rows ingested between evaluations join the held ones in capture-time order (late
    frames among them), rows leave as the window moves on; each read equals a whole read."""
    rng = np.random.default_rng(11)
    monotonic = [0.0]
    held = window.HeldWindow("parking", clock=lambda: monotonic[0])
    _insert(database_url, _rows("beige", T0, 60, "1", rng))
    _insert(database_url, _rows("beige", T0, 10, "1", rng, deployment="elsewhere"))

    async def check(since: datetime, until: datetime) -> window.Recent:
        kept = await held.read(pool, since, until)
        assert _same(kept, await window.fetch_recent(pool, "parking", since, until))
        return kept

    first = await check(T0, T0 + timedelta(seconds=50))
    assert len(first.times) == 50 * FPS
    monotonic[0] += 5
    # Newer frames, and a robot's buffered frames from within the held window arriving late.
    _insert(database_url, _rows("red", T0 + timedelta(seconds=60), 20, "2", rng))
    _insert(database_url, _rows("beige", T0 + timedelta(seconds=30.1), 5, "1", rng,
                                labelled=False))
    moved = await check(T0 + timedelta(seconds=20), T0 + timedelta(seconds=75))
    assert len(moved.times) == (55 + 5) * FPS and sorted(set(moved.model_versions)) == ["1", "2"]
    monotonic[0] += 5
    assert len((await check(T0 + timedelta(seconds=20), T0 + timedelta(minutes=2))).times) \
        == (60 + 5) * FPS


async def test_a_held_window_is_read_whole_again_on_schedule_and_when_reaching_back(
        database_url: str, pool: AsyncConnectionPool) -> None:
    """A write that committed long after it began (``ingested_at`` before the newest held
    row's, beyond the margin) is missed by top-ups and found by the next whole read; a
    window reaching back before what is held reads whole at once."""
    rng = np.random.default_rng(12)
    monotonic = [0.0]
    held = window.HeldWindow("parking", clock=lambda: monotonic[0])
    _insert(database_url, _rows("beige", T0, 20, "1", rng))
    assert len((await held.read(pool, T0, T0 + timedelta(minutes=1))).times) == 20 * FPS
    slow = _rows("beige", T0 + timedelta(seconds=20), 1, "1", rng)
    _insert(database_url, slow)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE features.observations SET ingested_at = now() - interval '1 hour' "
                     "WHERE observation_id = ANY(%s)", ([row[0] for row in slow],))
    monotonic[0] += window.FULL_READ_EVERY - 1
    assert len((await held.read(pool, T0, T0 + timedelta(minutes=1))).times) == 20 * FPS
    monotonic[0] += 1
    assert len((await held.read(pool, T0, T0 + timedelta(minutes=1))).times) == 21 * FPS

    later = await held.read(pool, T0 + timedelta(seconds=10), T0 + timedelta(minutes=1))
    assert len(later.times) == 11 * FPS
    back = await held.read(pool, T0, T0 + timedelta(minutes=1))
    assert len(back.times) == 21 * FPS, "the rows the window had let go are read again"


async def _evaluate_at(monitor: DriftMonitor, clock: list[datetime], *minutes: float) -> None:
    for minute in minutes:
        clock[0] = T0 + timedelta(minutes=minute)
        await monitor.evaluate_once()


async def _warm_then_red(database_url: str, pool: AsyncConnectionPool,
                         stub: Any) -> tuple[Deployments, DriftMonitor, list[datetime], list]:
    """Beige, then a warm floor (saturation only) that version 1 starts retraining for;
    while it does, at minute 15, the floor turns red (hue and red channel too)."""
    rng = np.random.default_rng(6)
    _insert(database_url, _rows("beige", T0, 600, "1", rng))
    _insert(database_url, _rows("warm", T0 + timedelta(minutes=10), 300, "1", rng, error_mm=30.0))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=15), 300, "1", rng, error_mm=40.0))
    deployments = Deployments()
    references = References(**{"1": ["beige"], "2": ["beige", "warm"]})
    clock: list[datetime] = [T0]
    monitor = _monitor(pool, deployments, references, stub, clock)
    await _evaluate_at(monitor, clock, 10.5, 12)
    warm_events = await monitor.events.list("parking", open_only=True)
    assert warm_events and all(e.sweep_id == "sweep-1" for e in warm_events)
    await _evaluate_at(monitor, clock, 15.5)
    red_events = [e for e in await monitor.events.list("parking", open_only=True)
                  if e.event_id not in {w.event_id for w in warm_events}]
    assert {"cusum_hue", "cusum_mean_r"} <= {e.rule for e in red_events}
    assert all(not e.sweep_id for e in red_events), "sweep-1 never saw the red floor"
    return deployments, monitor, clock, [warm_events, red_events]


async def _red_floor_retrained(servicer: Trainer, monitor: DriftMonitor, red_events: list,
                               version: str, snapshot: str) -> dict[str, Any]:
    """Assert sweep-2 fine-tunes ``version`` on the red floor from its change; the events."""
    request = servicer.started[1]
    assert request.warm_start.version == version
    assert list(request.data.include_snapshots_of) == [snapshot]
    assert abs(request.data.start_time.ToDatetime(tzinfo=UTC)
               - (T0 + timedelta(minutes=15))) <= timedelta(seconds=1)
    by_id = {e.event_id: e for e in await monitor.events.list("parking")}
    assert all(by_id[e.event_id].sweep_id == "sweep-2" for e in red_events)
    return by_id


async def test_a_change_after_a_sweep_started_cancels_it_and_retrains_the_new_world(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # Sweep-1's data ends before the red floor: its version would answer a world the robots
    # have left. It is cancelled at once, and the red floor's sweep fine-tunes version 1.
    servicer, stub = trainer
    _, monitor, clock, (warm_events, red_events) = await _warm_then_red(database_url, pool, stub)
    assert servicer.cancelled == {"sweep-1"}
    assert len(servicer.started) == 1, "one sweep at a time per deployment"
    by_id = {e.event_id: e for e in await monitor.events.list("parking")}
    assert all(by_id[e.event_id].note.startswith("waits for retraining sweep sweep-1 to stop")
               for e in red_events)

    await _evaluate_at(monitor, clock, 15.6, 15.9)  # stopped; then 200 labelled red frames
    assert len(servicer.started) == 2, "the red floor retrains once sweep-1 has stopped"
    by_id = await _red_floor_retrained(servicer, monitor, red_events, "1", "snap-beige")
    for warm in warm_events:
        event = by_id[warm.event_id]
        assert event.state == "superseded", event
        assert "the world changed again" in event.note and "sweep-1" in event.note, event.note


async def test_a_sweep_that_cannot_be_cancelled_is_waited_for_and_its_version_fine_tuned(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # The same drift, but the trainer cannot take the cancel: the red events wait for
    # sweep-1, and the next sweep fine-tunes the version it promoted on the red floor.
    servicer, stub = trainer
    servicer.can_cancel = False
    deployments, monitor, clock, (warm_events, red_events) = await _warm_then_red(
        database_url, pool, stub)
    assert not servicer.cancelled
    by_id = {e.event_id: e for e in await monitor.events.list("parking")}
    assert all(by_id[e.event_id].note.startswith("waits for retraining sweep sweep-1 to end")
               for e in red_events)
    assert len(servicer.started) == 1, "one sweep at a time per deployment"

    servicer.finished.add("sweep-1")
    await _evaluate_at(monitor, clock, 16)
    assert len(servicer.started) == 1, "not before the new version is the one serving"
    deployments.version = "2"
    await _evaluate_at(monitor, clock, 16.1)
    assert len(servicer.started) == 2
    by_id = await _red_floor_retrained(servicer, monitor, red_events, "2", "snap-beige-warm")
    assert all("version 2 promoted" in by_id[e.event_id].note for e in warm_events)


async def test_a_retrained_version_that_still_drifts_supersedes_the_event_and_retrains(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # Sweep-1's version 2 serves but did not learn the red floor (its reference is beige
    # alone). The events sweep-1 answered must not stay open and forgotten.
    servicer, stub = trainer
    rng = np.random.default_rng(7)
    _insert(database_url, _rows("beige", T0, 600, "1", rng))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=10), 150, "1", rng, error_mm=40.0))
    deployments = Deployments()
    references = References(**{"1": ["beige"], "2": ["beige"]})
    clock: list[datetime] = [T0]
    monitor = _monitor(pool, deployments, references, stub, clock)
    await _evaluate_at(monitor, clock, 10.5, 12)
    answered = await monitor.events.list("parking", open_only=True)
    assert answered and all(e.sweep_id == "sweep-1" for e in answered)
    servicer.finished.add("sweep-1")
    await _evaluate_at(monitor, clock, 12.5)
    deployments.version = "2"
    _insert(database_url, _rows("red", T0 + timedelta(minutes=12, seconds=30), 120, "2", rng,
                                error_mm=40.0))

    await _evaluate_at(monitor, clock, 13.5)
    events = {e.event_id: e for e in await monitor.events.list("parking")}
    cusum = next(e for e in answered if e.rule == "cusum_saturation")
    assert events[cusum.event_id].state == "superseded"
    assert "version 2 promoted; superseded: version 2 serves" in events[cusum.event_id].note
    fresh = [e for e in events.values() if e.state == "open" and e.rule == "cusum_saturation"]
    assert len(fresh) == 1 and fresh[0].model_version == "2", "a new event about version 2"
    assert len(servicer.started) == 2 and servicer.started[1].warm_start.version == "2"
    assert fresh[0].sweep_id == "sweep-2"


async def test_a_refused_retrain_is_tried_again_with_twice_the_data_then_left_to_an_operator(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    servicer, stub = trainer
    rng = np.random.default_rng(8)
    _insert(database_url, _rows("beige", T0, 600, "1", rng))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=10), 60, "1", rng, error_mm=40.0))
    clock: list[datetime] = [T0]
    deployments = Deployments()
    references = References(**{"1": ["beige"], "2": ["beige"]})
    monitor = _monitor(pool, deployments, references, stub, clock)
    await _evaluate_at(monitor, clock, 10.5, 11)
    assert len(servicer.started) == 1  # at 240 labelled red frames (200 needed)

    servicer.refused.add("sweep-1")
    await _evaluate_at(monitor, clock, 11.2, 11.4)
    events = await monitor.events.list("parking", open_only=True)
    assert events and all(not e.sweep_id for e in events), "the events wait again"
    assert all("version 2 refused by the gate: refused: forgets beige; retrying at 480 "
               "labelled frames of the new world (attempt 2 of 3)" in e.note for e in events)
    assert len(servicer.started) == 1, "not before the new world has twice the frames"

    _insert(database_url, _rows("red", T0 + timedelta(minutes=11), 60, "1", rng, error_mm=40.0))
    await _evaluate_at(monitor, clock, 12)
    assert len(servicer.started) == 2
    assert servicer.started[1].data.start_time == servicer.started[0].data.start_time
    servicer.refused.add("sweep-2")
    _insert(database_url, _rows("red", T0 + timedelta(minutes=12), 120, "1", rng, error_mm=40.0))
    await _evaluate_at(monitor, clock, 12.1, 14)
    assert len(servicer.started) == 3
    servicer.refused.add("sweep-3")
    # The features service restarts while sweep 3 runs: the count goes on from the events.
    monitor = _monitor(pool, deployments, references, stub, clock)
    _insert(database_url, _rows("red", T0 + timedelta(minutes=14), 240, "1", rng, error_mm=40.0))
    await _evaluate_at(monitor, clock, 14.1, 16, 18)
    assert len(servicer.started) == 3, "three refusals: an operator decides"
    assert len({r.request_id for r in servicer.started}) == 3, "each attempt is a new request"
    events = await monitor.events.list("parking", open_only=True)
    answered = [e for e in events if e.sweep_id == "sweep-3"]
    assert answered and all("3 sweeps refused: left to an operator" in e.note for e in answered)

    # An operator promotes version 2 (which does not know red either): judged afresh on it.
    deployments.version = "2"
    _insert(database_url, _rows("red", T0 + timedelta(minutes=18), 120, "2", rng, error_mm=40.0))
    await _evaluate_at(monitor, clock, 18.5, 20)
    assert len(servicer.started) == 4 and servicer.started[3].warm_start.version == "2"


Recovered = tuple[Deployments, DriftMonitor, list[datetime], np.random.Generator]


async def _red_floor_first_retrain(database_url: str, pool: AsyncConnectionPool, stub: Any,
                                   servicer: Trainer) -> Recovered:
    """Red for a minute (240 labelled frames): sweep-1 fine-tunes v1, and version 2 serves
    from minute 11 with red's consolidation planned (consolidated early should version 2 serve
    red at 1.5x the 5 mm version 1 served beige at before the change)."""
    rng = np.random.default_rng(9)
    _insert(database_url, _rows("beige", T0, 600, "1", rng))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=10), 60, "1", rng, error_mm=40.0))
    deployments = Deployments()
    references = References(**{"1": ["beige"], "2": ["beige", "red"], "3": ["beige", "red"]})
    clock: list[datetime] = [T0]
    monitor = _monitor(pool, deployments, references, stub, clock, consolidate_factor=3,
                       shortfall_ratio=1.5)
    await _evaluate_at(monitor, clock, 10.5, 11)
    assert len(servicer.started) == 1
    servicer.finished.add("sweep-1")
    await _evaluate_at(monitor, clock, 11.1)
    deployments.version = "2"
    return deployments, monitor, clock, rng


async def _recovered_red_floor(database_url: str, pool: AsyncConnectionPool, stub: Any,
                               servicer: Trainer, due: bool = True) -> Recovered:
    """Version 2 serves red after its first retrain (``_red_floor_first_retrain``) and
    answers it well, until the consolidation is due (720 frames), unless ``due`` is False."""
    deployments, monitor, clock, rng = await _red_floor_first_retrain(database_url, pool, stub,
                                                                      servicer)
    _insert(database_url, _rows("red", T0 + timedelta(minutes=11), 60, "2", rng))
    await _evaluate_at(monitor, clock, 12.1)
    assert len(servicer.started) == 1, "480 red frames: not 3x the 240 the drift retrain had " \
        "(and version 2 serves red as well as version 1 served beige: no shortfall)"
    if due:
        _insert(database_url, _rows("red", T0 + timedelta(minutes=12), 60, "2", rng))
        await _evaluate_at(monitor, clock, 13.1)
    return deployments, monitor, clock, rng


async def test_a_recovered_world_is_consolidated_with_three_then_six_times_the_data(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # The drift retrain learnt the red floor from its first 240 frames; at 720 the serving
    # version is fine-tuned again on all of them, from the same start (the first sweep's
    # holdout stays holdout), with no drift event involved.
    servicer, stub = trainer
    deployments, monitor, clock, rng = await _recovered_red_floor(database_url, pool, stub,
                                                                  servicer)
    assert len(servicer.started) == 2
    drift, consolidation = servicer.started
    assert consolidation.trigger == "consolidate:sweep-1" and consolidation.promote
    assert consolidation.warm_start.version == "2"
    assert consolidation.data.start_time == drift.data.start_time
    assert list(consolidation.data.deployments) == ["parking"]
    assert list(consolidation.data.include_snapshots_of) == ["snap-beige-red"]
    assert all(e.sweep_id == "sweep-1" for e in await monitor.events.list("parking")), \
        "no drift event belongs to a consolidation"

    # The gate refuses its candidate: version 2 keeps serving, and the plan is tried once
    # more at twice the frames (1,440): more of red to learn, more holdout runs to judge on.
    servicer.refused.add("sweep-2")
    _insert(database_url, _rows("red", T0 + timedelta(minutes=13), 60, "2", rng))
    await _evaluate_at(monitor, clock, 13.2, 14.1)
    assert len(servicer.started) == 2, "960 red frames: not twice the 720 it had"
    _insert(database_url, _rows("red", T0 + timedelta(minutes=14), 120, "2", rng))
    await _evaluate_at(monitor, clock, 16.1)
    assert len(servicer.started) == 3
    again = servicer.started[2]
    assert again.trigger == "consolidate:sweep-1" and again.warm_start.version == "2"
    assert again.data.start_time == drift.data.start_time
    assert again.request_id != consolidation.request_id

    # Refused again: that is the end of it (a later drift on version 2 needs no extra data).
    servicer.refused.add("sweep-3")
    _insert(database_url, _rows("red", T0 + timedelta(minutes=16), 360, "2", rng))
    await _evaluate_at(monitor, clock, 16.2, 18, 22.1)
    assert len(servicer.started) == 3
    assert monitor.retrainer is not None and not monitor.retrainer.attempts
    assert not monitor.retrainer.consolidations and not monitor.retrainer.running


async def test_a_first_retrain_serving_its_world_far_worse_than_before_is_consolidated_early(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # The quick demo of 2026-12-06 00:10, phase 4: the angled world's first retrain served it
    # at 3.7x the error before the change, yet no rule fired (a concept rule judges a version
    # against its own holdout, one run of the new world). Here version 2 serves red at 9 mm,
    # 1.8x the 5 mm version 1 served beige at before the change, and below the concept
    # rules' 2x-2.5x of its 5 mm holdout MAE.
    servicer, stub = trainer
    _, monitor, clock, rng = await _red_floor_first_retrain(database_url, pool, stub, servicer)
    assert monitor.retrainer is not None
    assert monitor.retrainer.consolidations["parking"].pre_drift_mae_mm == pytest.approx(5.0)
    _insert(database_url, _rows("red", T0 + timedelta(minutes=11), 20, "2", rng, error_mm=9.0))
    await _evaluate_at(monitor, clock, 11.4)
    assert len(servicer.started) == 1, "320 red frames: not twice the 240 it was learnt from"
    # Robots that have not switched yet: red frames enough, but too few of version 2's answers.
    _insert(database_url, _rows("red", T0 + timedelta(minutes=11, seconds=20), 40, "1", rng,
                                error_mm=40.0))
    await _evaluate_at(monitor, clock, 11.7)
    assert len(servicer.started) == 1, "80 answers of version 2: too few to judge it on"
    _insert(database_url, _rows("red", T0 + timedelta(minutes=12), 20, "2", rng, error_mm=9.0))
    await _evaluate_at(monitor, clock, 12.4)
    assert not [e for e in await monitor.events.list("parking") if e.model_version == "2"], \
        "no rule fired on version 2"
    assert len(servicer.started) == 2
    drift, early = servicer.started
    assert early.trigger == "shortfall:sweep-1" and early.warm_start.version == "2"
    assert early.data.start_time == drift.data.start_time, "red from its start"

    # It is the consolidation brought forward: refused, it is planned again at twice its
    # frames as any consolidation is, not started again at once by the same shortfall.
    servicer.refused.add("sweep-2")
    _insert(database_url, _rows("red", T0 + timedelta(minutes=12, seconds=20), 40, "2", rng,
                                error_mm=9.0))
    await _evaluate_at(monitor, clock, 12.5, 13.1)
    assert len(servicer.started) == 2
    plan = monitor.retrainer.consolidations["parking"]
    assert plan.refused == 1 and plan.due_frames == 2 * 720


@pytest.mark.parametrize("served_mm", [9.0, 6.0])
async def test_a_consolidation_still_far_worse_than_before_the_change_is_followed_up(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any],
        served_mm: float) -> None:
    # The quick demo of 2026-12-06 00:10, phase 4: the angled world's consolidation was
    # promoted and served the angle at 4.2x its error before the change; nothing followed.
    # Here the consolidation (sweep-2, on 720 red frames) promotes version 3, which serves
    # red at 9 mm (1.8x the 5 mm before the change): at twice its frames one more sweep
    # fine-tunes version 3 on red from its start. At 6 mm (1.2x) the world is recovered.
    servicer, stub = trainer
    deployments, monitor, clock, rng = await _recovered_red_floor(database_url, pool, stub,
                                                                  servicer)
    assert servicer.started[1].trigger == "consolidate:sweep-1"
    servicer.finished.add("sweep-2")
    servicer.versions["sweep-2"] = "3"
    await _evaluate_at(monitor, clock, 13.2)
    deployments.version = "3"
    assert monitor.retrainer is not None
    plan = monitor.retrainer.consolidations["parking"]
    assert plan.follow_up and plan.version == "3" and plan.due_frames == 2 * 720

    _insert(database_url, _rows("red", T0 + timedelta(minutes=13), 120, "3", rng,
                                error_mm=served_mm))
    await _evaluate_at(monitor, clock, 15.1)
    assert len(servicer.started) == 2, "1,200 red frames: not twice the 720 it had"
    _insert(database_url, _rows("red", T0 + timedelta(minutes=15), 60, "3", rng,
                                error_mm=served_mm))
    await _evaluate_at(monitor, clock, 16.1)
    assert not [e for e in await monitor.events.list("parking") if e.model_version == "3"], \
        "no rule fired on version 3"
    if served_mm == 6.0:
        assert len(servicer.started) == 2, "served within 1.5x: recovered, nothing follows"
        assert "parking" not in monitor.retrainer.consolidations
        return
    assert len(servicer.started) == 3
    follow_up = servicer.started[2]
    assert follow_up.trigger == "shortfall:sweep-1" and follow_up.warm_start.version == "3"
    assert follow_up.data.start_time == servicer.started[0].data.start_time
    assert follow_up.request_id != servicer.started[1].request_id


async def test_a_consolidation_not_due_within_half_an_hour_is_dropped(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    servicer, stub = trainer
    _, monitor, clock, rng = await _recovered_red_floor(database_url, pool, stub, servicer,
                                                        due=False)
    assert monitor.retrainer is not None and monitor.retrainer.consolidations
    await _evaluate_at(monitor, clock, 30, 41.2)  # the robots left; 30 min after promotion
    assert not monitor.retrainer.consolidations
    _insert(database_url, _rows("red", T0 + timedelta(minutes=41), 120, "2", rng))
    await _evaluate_at(monitor, clock, 43.1)
    assert len(servicer.started) == 1, "a dropped plan starts nothing later"


async def _concept_alarms(monitor: DriftMonitor, version: str) -> list[Any]:
    """The open events on ``version``, checked to be concept rules only (its errors grew, its
    images did not move)."""
    alarms = [e for e in await monitor.events.list("parking", open_only=True)
              if e.model_version == version]
    assert alarms and {e.kind for e in alarms} == {"concept"}, [(e.rule, e.kind) for e in alarms]
    return alarms


async def test_a_concept_alarm_on_a_first_retrain_retrains_its_world_from_its_start(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # The quick demo of 2026-12-05 15:37, phase 4: the concept CUSUM fired on the angled
    # world's first retrain and dated a change 88 s into that world; the retrain from there
    # lacked the world's first minute and judged it on one holdout run. Here version 2,
    # retrained on red's first 240 frames, errs on red at 3x its holdout MAE (same images;
    # its answers stay within the label range, so no label rule explains the errors).
    servicer, stub = trainer
    _, monitor, clock, rng = await _red_floor_first_retrain(database_url, pool, stub, servicer)
    _insert(database_url, _rows("red", T0 + timedelta(minutes=11), 30, "2", rng, error_mm=15.0))
    await _evaluate_at(monitor, clock, 11.3, 11.5)
    alarms = await _concept_alarms(monitor, "2")
    assert len(servicer.started) == 1, "360 frames of red: not twice the 240 it was learnt from"
    assert all(e.note == "waits for more of the world version 2 was first retrained for "
                         "(360 of 480 labelled frames since it began), then retrains it from "
                         "its start"
               for e in alarms if not e.sweep_id), [e.note for e in alarms]

    _insert(database_url, _rows("red", T0 + timedelta(minutes=11, seconds=30), 30, "2", rng,
                                error_mm=15.0))
    await _evaluate_at(monitor, clock, 11.8)
    assert len(servicer.started) == 2
    first, retrain = servicer.started
    assert retrain.trigger.startswith("drift:") and retrain.warm_start.version == "2"
    assert retrain.data.start_time == first.data.start_time, \
        "red from its start, not from the change the alarm dated"
    assert all(e.sweep_id == "sweep-2" for e in await monitor.events.list("parking", open_only=True)
               if e.model_version == "2")

    # Refused: tried again on the same world, from its start, at twice the frames.
    servicer.refused.add("sweep-2")
    _insert(database_url, _rows("red", T0 + timedelta(minutes=12), 120, "2", rng, error_mm=15.0))
    await _evaluate_at(monitor, clock, 12.1, 14.1)
    assert len(servicer.started) == 3
    again = servicer.started[2]
    assert again.trigger.startswith("drift:") and again.warm_start.version == "2"
    assert again.data.start_time == first.data.start_time

    # Promoted: its world's consolidation is judged against the error before the change of
    # the first retrain (version 2 served nothing before its world began).
    servicer.finished.add("sweep-3")
    servicer.versions["sweep-3"] = "3"
    await _evaluate_at(monitor, clock, 14.2)
    assert monitor.retrainer is not None
    plan = monitor.retrainer.consolidations["parking"]
    assert plan.version == "3" and plan.pre_drift_mae_mm == pytest.approx(5.0)


async def test_a_concept_alarm_on_a_consolidated_version_retrains_from_the_change_it_dates(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # The quick demo of 2026-12-07 00:19, phase 4: the angle began while the green floor's
    # consolidation (version 5) waited for its follow-up's verdict; the concept CUSUM fired
    # on version 5 and the retrain took the green world from its start (705 frames, 10 s of
    # the angle in them): version 6 served the angle at 15.3 mm (5.9x its error before). A
    # consolidated version has learnt its world: a concept alarm on it is a new change,
    # retrained from where the alarm dates it, once that new world has its frames.
    servicer, stub = trainer
    deployments, monitor, clock, rng = await _recovered_red_floor(database_url, pool, stub,
                                                                  servicer)
    servicer.finished.add("sweep-2")
    servicer.versions["sweep-2"] = "3"
    await _evaluate_at(monitor, clock, 13.2)
    deployments.version = "3"
    assert monitor.retrainer is not None
    assert monitor.retrainer.consolidations["parking"].follow_up
    _insert(database_url, _rows("red", T0 + timedelta(minutes=13), 60, "3", rng))
    # The same images; version 3's errors grow: a concept change at minute 14.
    _insert(database_url, _rows("red", T0 + timedelta(minutes=14), 30, "3", rng, error_mm=15.0))
    await _evaluate_at(monitor, clock, 14.3, 14.5)
    alarms = await _concept_alarms(monitor, "3")
    assert len(servicer.started) == 2, "120 frames since the change: fewer than 200"
    assert not any("first retrained for" in e.note for e in alarms), [e.note for e in alarms]

    _insert(database_url, _rows("red", T0 + timedelta(minutes=14, seconds=30), 30, "3", rng,
                                error_mm=15.0))
    await _evaluate_at(monitor, clock, 15.1)
    assert len(servicer.started) == 3
    retrain = servicer.started[2]
    assert retrain.trigger.startswith("drift:") and retrain.warm_start.version == "3"
    start = retrain.data.start_time.ToDatetime(tzinfo=UTC)
    assert start >= T0 + timedelta(minutes=13, seconds=30), \
        f"from the change the alarm dates, not the red world's start: {start}"


async def _green_during_the_consolidation(database_url: str, pool: AsyncConnectionPool,
                                          stub: Any, servicer: Trainer, seconds: int,
                                          minute: float) -> Recovered:
    """The red floor recovered and its consolidation (sweep-2) running, then ``seconds`` of
    a green floor version 2 never saw, evaluated at ``minute``: the drift cancels sweep-2."""
    recovered = await _recovered_red_floor(database_url, pool, stub, servicer)
    _, monitor, clock, rng = recovered
    assert [r.trigger for r in servicer.started][1] == "consolidate:sweep-1"
    _insert(database_url, _rows("green", T0 + timedelta(minutes=13), seconds, "2", rng,
                                error_mm=40.0))
    await _evaluate_at(monitor, clock, minute)
    assert servicer.cancelled == {"sweep-2"}, "a drift during the consolidation cancels it"
    return recovered


async def test_a_drift_during_a_consolidation_cancels_it_and_retrains_the_new_world(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    servicer, stub = trainer
    # A green floor version 2 never saw: the recovery comes first.
    _, monitor, clock, _ = await _green_during_the_consolidation(database_url, pool, stub,
                                                                 servicer, 60, 13.5)
    green = [e for e in await monitor.events.list("parking", open_only=True)
             if e.model_version == "2"]
    assert green and all(e.note.startswith("waits for retraining sweep sweep-2 to stop: a "
                                           "consolidation gives way to a drift") for e in green)
    assert len(servicer.started) == 2

    await _evaluate_at(monitor, clock, 13.6, 14)
    assert len(servicer.started) == 3, "the green floor retrains once sweep-2 has stopped"
    retrain = servicer.started[2]
    assert retrain.trigger.startswith("drift:") and retrain.warm_start.version == "2"
    assert abs(retrain.data.start_time.ToDatetime(tzinfo=UTC)
               - (T0 + timedelta(minutes=13))) <= timedelta(seconds=1)
    by_id = {e.event_id: e for e in await monitor.events.list("parking")}
    assert all(by_id[e.event_id].sweep_id == "sweep-3" for e in green)


async def test_a_consolidation_that_gave_way_to_a_drift_resolved_before_its_retrain_runs_again(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # The quick demo of 2026-12-04 09:07, phase 4: a CUSUM on the version that half knew the
    # new world fired during the consolidation, cancelled it, and resolved before a retrain
    # of its own could start; the world kept its first, partial retrain for good.
    servicer, stub = trainer
    _, monitor, clock, rng = await _green_during_the_consolidation(database_url, pool, stub,
                                                                   servicer, 15, 13.3)
    await _evaluate_at(monitor, clock, 13.35, 13.4)
    assert len(servicer.started) == 2, "15 s of green is not enough to retrain on"
    assert monitor.retrainer is not None and not monitor.retrainer.running
    waiting = [e for e in await monitor.events.list("parking", open_only=True)
               if e.model_version == "2" and not e.sweep_id]
    assert waiting, "the drift still waits for frames to retrain on"

    # Red again, which version 2 knows: the drift resolves with no retrain of its own.
    _insert(database_url, _rows("red", T0 + timedelta(minutes=13, seconds=15), 585, "2", rng))
    await _evaluate_at(monitor, clock, 16, 19, 22.9)
    drifts = [e for e in await monitor.events.list("parking") if e.model_version == "2"]
    assert drifts and all(e.state == "resolved" and not e.sweep_id for e in drifts), \
        [(e.rule, e.state, e.sweep_id) for e in drifts]
    assert len(servicer.started) == 3, "the consolidation is planned again and starts"
    again = servicer.started[2]
    assert again.trigger == "consolidate:sweep-1" and again.warm_start.version == "2"
    assert again.data.start_time == servicer.started[1].data.start_time
    assert again.request_id != servicer.started[1].request_id, "not the cancelled sweep again"


async def test_undrifted_drive_raises_no_alarm(database_url: str, pool: AsyncConnectionPool,
                                               trainer: tuple[Trainer, Any]) -> None:
    servicer, stub = trainer
    rng = np.random.default_rng(2)
    _insert(database_url, _rows("beige", T0, 1800, "1", rng))
    clock = [T0]
    monitor = _monitor(pool, Deployments(), References(), stub, clock)
    for minutes in range(5, 31):
        clock[0] = T0 + timedelta(minutes=minutes)
        await monitor.evaluate_once()
    assert await monitor.events.list("parking") == []
    assert servicer.started == []


async def test_after_a_promoted_retrain_the_windows_restart_and_stay_quiet(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    # Version 1 met red for five minutes; version 2 (trained on beige and red) takes over.
    # Every window still reaching into version 1's red minutes must not count against v2.
    servicer, stub = trainer
    rng = np.random.default_rng(4)
    _insert(database_url, _rows("beige", T0, 300, "1", rng))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=5), 300, "1", rng, error_mm=40.0))
    _insert(database_url, _rows("red", T0 + timedelta(minutes=10), 600, "2", rng))
    deployments, references = Deployments(), References()
    deployments.version = "2"
    clock = [T0 + timedelta(minutes=10, seconds=5)]
    monitor = _monitor(pool, deployments, references, stub, clock)
    while clock[0] <= T0 + timedelta(minutes=20):
        await monitor.evaluate_once()
        clock[0] += timedelta(seconds=20)
    assert await monitor.events.list("parking") == []
    assert servicer.started == []


async def test_a_robot_without_labels_gets_covariate_drift_and_a_note_not_a_sweep(
        database_url: str, pool: AsyncConnectionPool, trainer: tuple[Trainer, Any]) -> None:
    servicer, stub = trainer
    rng = np.random.default_rng(5)
    rows = _rows("beige", T0, 300, "1", rng, deployment="yard", labelled=False, data_group="yards")
    rows += _rows("red", T0 + timedelta(minutes=5), 120, "1", rng, deployment="yard",
                  labelled=False, data_group="yards")
    _insert(database_url, rows)
    clock = [T0 + timedelta(minutes=5, seconds=30)]
    monitor = _monitor(pool, Deployments("yard"), References(), stub, clock)
    for _ in range(4):
        await monitor.evaluate_once()
        clock[0] += timedelta(seconds=5)
    events = await monitor.events.list("yard", open_only=True)
    assert {e.kind for e in events} == {"covariate"}, "no labels: only the image rules can tell"
    assert all("needs labelled data from data group yards" in e.note for e in events)
    assert all(not e.sweep_id for e in events) and servicer.started == []
    # Once a labelled robot of the same data group drives that world, the sweep can start.
    _insert(database_url, _rows("red", T0 + timedelta(minutes=6), 60, "1", rng,
                                deployment="yard-labelled", data_group="yards"))
    clock[0] = T0 + timedelta(minutes=7, seconds=5)
    await monitor.evaluate_once()
    assert len(servicer.started) == 1
    assert list(servicer.started[0].data.data_groups) == ["yards"]


async def test_an_unreachable_registry_is_one_warning_then_one_line_when_it_answers(
        pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture) -> None:
    from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc
    from edgeloop.features.drift.deployments import DeploymentSource, RegistryUnreachable

    # The real source against a port nobody listens on: what the monitor sees while the
    # registry starts.
    async with aio.insecure_channel(f"127.0.0.1:{free_port()}") as channel:
        source = DeploymentSource(registry_service_pb2_grpc.RegistryServiceStub(channel), "t")
        with pytest.raises(RegistryUnreachable, match="the registry cannot be reached"):
            await source.active()

        class StartingRegistry(Deployments):
            """Unreachable for three evaluations (through the real source), then answers."""

            calls = 0

            async def active(self) -> list[ActiveDeployment]:
                self.calls += 1
                if self.calls <= 3:
                    return await source.active()
                return []

        deployments = StartingRegistry()
        rules = load_rules().model_copy(update={"interval": timedelta(milliseconds=10)})
        monitor = DriftMonitor(pool, rules, deployments, References(), None)  # type: ignore[arg-type]
        caplog.set_level(logging.INFO, logger="edgeloop.features.drift.monitor")
        task = asyncio.create_task(monitor.run())
        try:
            for _ in range(500):
                if deployments.calls >= 6:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert deployments.calls >= 6
    lines = [(r.levelname, r.message) for r in caplog.records
             if r.name == "edgeloop.features.drift.monitor"]
    assert lines == [("WARNING", "drift evaluation waits for the registry"),
                     ("INFO", "registry reachable again; drift evaluation goes on")], lines
    assert not any(r.exc_info for r in caplog.records)
