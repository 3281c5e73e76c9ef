"""The sweep life cycle: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED.

One sweep runs at a time per model; further requests for that model queue and start
in order when it ends. Sweeps are persisted (``store``), so a trainer restart marks
the sweeps it was running as FAILED with the reason and resumes the queue.

A running sweep: snapshot (or reuse ``from_sweep``'s) -> the weights of the version it
fine-tunes, if any (``warm_start``) -> MLflow parent run -> Ray Tune sweep in a worker
thread -> export, holdout evaluation, MLflow model, registration (waiting out a registry
outage, ``registry_wait_s``). Cancelling stops the Tuner's trials through its stopper.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import mlflow
from edgeloop.contracts.features.v1 import feature_store_service_pb2
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2
from edgeloop.platform import log_context
from edgeloop.platform.errors import (
    EdgeloopError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from edgeloop.platform.objectstore import LocalFolderStore, ObjectStore
from edgeloop.platform.tensorflow_process import TensorFlowProcess
from edgeloop.trainer import carry, holdout, precision, registration, snapshot, tune, warm_start
from edgeloop.trainer.events import EventBus, make_event
from edgeloop.trainer.settings import Settings
from edgeloop.trainer.store import TERMINAL, SweepStore
from edgeloop.trainer.tracking import SweepTracking, ensure_experiment, git_sha
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace

log = logging.getLogger(__name__)
tracer = trace.get_tracer("edgeloop.trainer")
S = sweep_pb2
DEFAULT_MODEL = "distance"
RESTARTED = "trainer restarted while the sweep was running"
CANCEL_WAIT_S = 120.0
MAX_REQUEST_ID = 128
REGISTRY_RETRY_S, REGISTRY_RETRY_MAX_S = 1.0, 10.0
T = TypeVar("T")


@dataclass
class Dependencies:
    """What a sweep talks to."""

    settings: Settings
    store: SweepStore
    bus: EventBus
    objects: ObjectStore
    features: grpc.aio.Channel
    registry: grpc.aio.Channel
    work_dir: Path
    total_cpus: float
    node_cpus: float = 0.0
    """The largest Ray node's CPUs (0: all of ``total_cpus`` on one node)."""


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class SweepManager:
    """Queues, runs, cancels and recovers sweeps."""

    def __init__(self, deps: Dependencies) -> None:
        self.deps = deps
        self.running: dict[str, asyncio.Task[None]] = {}  # model name -> task
        self.live: dict[str, S.Sweep] = {}  # sweep id -> the message being updated
        self._kick_lock = asyncio.Lock()
        self._save_lock = asyncio.Lock()
        self._cancelled: set[str] = set()

    async def recover(self) -> None:
        """At start: sweeps left RUNNING failed with the reason; queued ones resume."""
        for sweep_id in await self.deps.store.ids_in_state(S.SWEEP_STATE_RUNNING):
            sweep = await self.deps.store.get(sweep_id)
            sweep.state, sweep.error = S.SWEEP_STATE_FAILED, RESTARTED
            sweep.finished_at.CopyFrom(_now())
            await self.deps.bus.emit(make_event(sweep, S.SWEEP_EVENT_TYPE_STATE_CHANGED, RESTARTED))
            await self.deps.store.save(sweep)
            log.warning("sweep failed by restart", extra={"sweep_id": sweep_id})
        models = {s.model_name for s in await self._queued()}
        for model in models:
            await self.kick(model)

    async def _queued(self) -> list[S.Sweep]:
        ids = await self.deps.store.ids_in_state(S.SWEEP_STATE_QUEUED)
        return [await self.deps.store.get(i) for i in ids]

    async def submit(self, request: trainer_service_pb2.StartSweepRequest) -> S.Sweep:
        """Validate and queue a sweep; it starts when its model has no running sweep.

        A request whose ``request_id`` a sweep already has returns that sweep (a retry).
        """
        request = self._with_defaults(request)
        if request.request_id and (queued := await self._by_request_id(request.request_id)):
            return queued
        tune.search_values(request.search_space)  # InvalidArgument naming the field
        from_snapshot = await self._check_data(request)
        warm_version = await self._check_warm_start(request)
        sweep = S.Sweep(
            sweep_id=uuid.uuid4().hex[:12],
            model_name=request.model_name,
            experiment=request.experiment,
            trigger=request.trigger,
            state=S.SWEEP_STATE_QUEUED,
            data=request.data,
            search_space=request.search_space,
            num_trials=request.num_trials,
            from_sweep=request.from_sweep,
            deployment=request.deployment,
            created_at=_now(),
            warm_start_version=warm_version,
        )
        if from_snapshot:
            sweep.dataset.snapshot_id = from_snapshot
        if not await self.deps.store.insert(sweep, request):
            # The same request_id raced this one in and won: answer with its sweep.
            return await self._by_request_id(request.request_id)  # type: ignore[return-value]
        await self.deps.bus.emit(
            make_event(sweep, S.SWEEP_EVENT_TYPE_STATE_CHANGED, f"queued (trigger {sweep.trigger})")
        )
        log.info(
            "sweep queued",
            extra={"sweep_id": sweep.sweep_id, "model": sweep.model_name, "trigger": sweep.trigger},
        )
        await self.kick(sweep.model_name)
        return await self.get(sweep.sweep_id)

    async def _by_request_id(self, request_id: str) -> S.Sweep | None:
        sweep_id = await self.deps.store.by_request_id(request_id)
        if sweep_id is None:
            return None
        log.info("StartSweep retried; answering with the sweep it queued",
                 extra={"sweep_id": sweep_id, "request_id": request_id})
        return await self.get(sweep_id)

    def _with_defaults(
        self, request: trainer_service_pb2.StartSweepRequest
    ) -> trainer_service_pb2.StartSweepRequest:
        filled = trainer_service_pb2.StartSweepRequest()
        filled.CopyFrom(request)
        filled.model_name = filled.model_name or DEFAULT_MODEL
        filled.experiment = filled.experiment or filled.model_name
        filled.trigger = filled.trigger or "manual"
        filled.num_trials = filled.num_trials or self.deps.settings.default_trials
        if filled.num_trials > 256:
            raise InvalidArgument("num_trials", f"{filled.num_trials} is more than 256")
        if len(filled.request_id) > MAX_REQUEST_ID:
            raise InvalidArgument("request_id", f"is longer than {MAX_REQUEST_ID} characters")
        return filled

    async def _check_data(self, request: trainer_service_pb2.StartSweepRequest) -> str:
        """Refuse at once what cannot run: unknown from_sweep, too little labelled data."""
        if request.from_sweep:
            try:
                source = await self.deps.store.get(request.from_sweep)
            except NotFound as exc:
                raise NotFound(f"from_sweep: no sweep {request.from_sweep!r}") from exc
            snapshot_id = source.dataset.snapshot_id
            if not snapshot_id or not self.deps.objects.exists(
                f"{snapshot.prefix(snapshot_id)}/manifest.json"
            ):
                raise FailedPrecondition(
                    f"from_sweep: sweep {request.from_sweep} has no dataset "
                    "snapshot (it never built one)"
                )
            return snapshot_id
        minimum = self.deps.settings.min_observations
        query = snapshot.list_request(request.data)
        # Enough is all this answers: counting every row of a fleet's selection took longer
        # than a caller's deadline under load.
        query.limit = minimum
        found = await snapshot.fetch_observations_meta(self.deps.features, query)
        if found < minimum and not request.data.include_snapshots_of:
            raise FailedPrecondition(
                f"data: the selection matches {found} labelled observations; "
                f"a sweep needs at least {minimum}"
            )
        return ""

    async def _check_warm_start(self, request: trainer_service_pb2.StartSweepRequest) -> str:
        """The version a warm start names (resolved now: an alias may move), or ''."""
        if not request.HasField("warm_start"):
            return ""
        version = await warm_start.resolve(self.deps.registry, self.deps.settings.registry_token,
                                           request.model_name, request.warm_start)
        await asyncio.to_thread(warm_start.check_available,
                                self.deps.settings.mlflow_tracking_uri, version)
        return version.version

    async def get(self, sweep_id: str) -> S.Sweep:
        """The sweep as it is now (the live message while it runs)."""
        if sweep_id in self.live:
            return self.live[sweep_id]
        return await self.deps.store.get(sweep_id)

    async def kick(self, model_name: str) -> None:
        """Start the oldest queued sweep of ``model_name`` if none of its sweeps runs."""
        async with self._kick_lock:
            if model_name in self.running:
                return
            queued = await self.deps.store.ids_in_state(S.SWEEP_STATE_QUEUED, model_name)
            if queued:
                task = asyncio.create_task(self._run(queued[0]), name=f"sweep-{queued[0]}")
                self.running[model_name] = task

    async def cancel(self, sweep_id: str) -> S.Sweep:
        """Cancel a queued sweep at once, or stop a running one's trials and wait for it."""
        sweep = await self.get(sweep_id)
        if sweep.state in TERMINAL:
            raise FailedPrecondition(
                f"sweep_id: sweep {sweep_id} already ended ({S.SweepState.Name(sweep.state)})"
            )
        self._cancelled.add(sweep_id)
        tune.cancel(sweep_id)
        if sweep.state == S.SWEEP_STATE_QUEUED and sweep_id not in self.live:
            await self._finish(sweep, S.SWEEP_STATE_CANCELLED, "cancelled while queued")
            return await self.get(sweep_id)
        task = self.running.get(sweep.model_name)
        if task is not None:
            await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
        return await self.get(sweep_id)

    async def close(self) -> None:
        """Stop running sweeps (the service is stopping); they end CANCELLED."""
        for sweep_id in list(self.live):
            tune.cancel(sweep_id)
            self._cancelled.add(sweep_id)
        if self.running:
            await asyncio.wait(set(self.running.values()), timeout=CANCEL_WAIT_S)

    async def persist(self, sweep: S.Sweep) -> None:
        """Save the live message (serialised saves keep the last state last)."""
        async with self._save_lock:
            await self.deps.store.save(sweep)
        self.deps.bus.notify(sweep.sweep_id)

    async def emit(self, sweep: S.Sweep, kind: int, message: str, **fields: Any) -> None:
        """Persist the sweep and record a progress event."""
        await self.persist(sweep)
        await self.deps.bus.emit(make_event(sweep, kind, message, **fields))

    async def _finish(self, sweep: S.Sweep, state: int, message: str) -> None:
        sweep.state = state
        sweep.finished_at.CopyFrom(_now())
        if state == S.SWEEP_STATE_FAILED:
            sweep.error = message
        # The final event is stored before the final state: a watcher ends its stream when
        # it sees the state, so the event carrying it must already be there to be sent.
        await self.deps.bus.emit(make_event(sweep, S.SWEEP_EVENT_TYPE_STATE_CHANGED, message))
        await self.persist(sweep)

    async def _run(self, sweep_id: str) -> None:
        sweep = await self.deps.store.get(sweep_id)
        request = await self.deps.store.request(sweep_id)
        try:
            if sweep_id in self._cancelled or sweep.state != S.SWEEP_STATE_QUEUED:
                # CancelSweep came while this task was loading the sweep, and ended it as
                # queued: running it now would overwrite CANCELLED with RUNNING
                log.info("cancelled before it started", extra={"sweep_id": sweep_id})
                return
            self.live[sweep_id] = sweep
            attributes = {"edgeloop.sweep_id": sweep_id, "edgeloop.model_name": sweep.model_name,
                          "edgeloop.trigger": sweep.trigger}
            with tracer.start_as_current_span("sweep", attributes=attributes) as span, \
                    log_context(sweep_id=sweep_id):
                sweep.trace_id = format(span.get_span_context().trace_id, "032x")
                await self._run_states(sweep, request)
        finally:
            self.live.pop(sweep_id, None)
            self._cancelled.discard(sweep_id)
            self.running.pop(sweep.model_name, None)
            await self.kick(sweep.model_name)

    async def _run_states(
        self, sweep: S.Sweep, request: trainer_service_pb2.StartSweepRequest
    ) -> None:
        sweep.state = S.SWEEP_STATE_RUNNING
        sweep.started_at.CopyFrom(_now())
        await self.emit(sweep, S.SWEEP_EVENT_TYPE_STATE_CHANGED, "running")
        run = SweepRun(self, sweep, request)
        try:
            await run.execute()
        except tune.Cancelled:
            run.close_tracking("KILLED")
            await self._finish(sweep, S.SWEEP_STATE_CANCELLED, "cancelled")
        except EdgeloopError as exc:
            run.close_tracking("FAILED")
            log.warning("sweep failed: %s", exc.message)
            await self._finish(sweep, S.SWEEP_STATE_FAILED, exc.message)
        except Exception as exc:  # a bug or a lower library: keep the service, fail the sweep
            log.exception("sweep failed unexpectedly")
            run.close_tracking("FAILED")
            await self._finish(
                sweep, S.SWEEP_STATE_FAILED, f"internal error: {type(exc).__name__}: {exc}"
            )
        else:
            run.close_tracking("FINISHED")
            await self._finish(
                sweep,
                S.SWEEP_STATE_SUCCEEDED,
                f"succeeded: version {sweep.model_version}"
                f"{' promoted' if sweep.promoted else ' not promoted'}",
            )

    def cancelled(self, sweep_id: str) -> bool:
        """Whether a cancel was asked for ``sweep_id``."""
        return sweep_id in self._cancelled


class SweepRun:
    """One execution of a sweep, phase by phase."""

    def __init__(
        self, manager: SweepManager, sweep: S.Sweep, request: trainer_service_pb2.StartSweepRequest
    ) -> None:
        self.manager = manager
        self.deps = manager.deps
        self.sweep = sweep
        self.request = request
        self.tracking: SweepTracking | None = None
        self.folder = self.deps.work_dir / "sweeps" / sweep.sweep_id
        self.warm: warm_start.WarmStart | None = None
        self.tensorflow = TensorFlowProcess(imports=("edgeloop.trainer.model",))
        """The registration's child process (export, holdout evaluations): the trainer
        process never imports TensorFlow."""

    def _check_cancel(self) -> None:
        if self.manager.cancelled(self.sweep.sweep_id):
            raise tune.Cancelled("the sweep was cancelled")

    async def execute(self) -> None:
        """All phases; raises Cancelled, EdgeloopError or anything unexpected."""
        try:
            with tracer.start_as_current_span("sweep.snapshot"):
                snap = await self.build_snapshot()
            self._check_cancel()
            if self.sweep.warm_start_version:
                self.warm = await self.fetch_warm_start()
            await asyncio.to_thread(self.start_tracking, snap)
            with tracer.start_as_current_span("sweep.tune") as span:
                outcome = await self.tune(snap)
                span.set_attribute("edgeloop.best_trial_id", outcome.trial_id)
            self._check_cancel()
            with tracer.start_as_current_span("sweep.register"):
                await self.register(snap, outcome)
        finally:
            await self.tensorflow.close()

    async def build_snapshot(self) -> snapshot.Snapshot:
        """Build the snapshot, or reload ``from_sweep``'s identical one."""
        reuse = self.sweep.dataset.snapshot_id
        if reuse:
            snap = await asyncio.to_thread(
                snapshot.load_snapshot, reuse, self.deps.objects, self.deps.work_dir
            )
            note = f"reused snapshot {reuse} ({snap.content_hash[:12]})"
        else:
            observations, carried = await self._observations()
            snap = await asyncio.to_thread(
                snapshot.build_snapshot,
                self.sweep.sweep_id,
                observations,
                self.request.data,
                self.request.seed,
                self.deps.objects,
                self.deps.work_dir,
                self.deps.settings.min_observations,
                carried.entries,
            )
            note = f"snapshot of {len(observations)} observations ({snap.content_hash[:12]})"
            if carried.entries:
                note += f"; {carried.describe()}"
            note += snapshot.describe_split(snap.manifest)
            await self.deps.store.add_snapshot_observations(
                snap.snapshot_id, [e["observation_id"] for e in snap.manifest["observations"]]
            )
        self.sweep.dataset.CopyFrom(snap.to_proto())
        counts = snap.manifest["split_counts"]
        await self.manager.emit(
            self.sweep,
            S.SWEEP_EVENT_TYPE_SNAPSHOT_BUILT,
            note,
            metrics={k: float(v) for k, v in counts.items()},
        )
        return snap

    async def fetch_warm_start(self) -> warm_start.WarmStart:
        """The weights of the version the trials start from, downloaded once."""
        settings = self.deps.settings
        version = await self._while_registry_down(lambda: warm_start.resolve(
            self.deps.registry, settings.registry_token, self.sweep.model_name,
            deployment_pb2.VersionSelector(version=self.sweep.warm_start_version)))
        return await asyncio.to_thread(warm_start.download, settings.mlflow_tracking_uri,
                                       version, self.folder / "warm_start")

    def search_values(self) -> dict[str, list[Any]]:
        """The sweep's search values; a warm start fixes the model's shape to its version's."""
        values = tune.search_values(self.sweep.search_space)
        return warm_start.pin_shape(values, self.warm) if self.warm else values

    async def _observations(self) -> tuple[list[Any], carry.Carried]:
        """The selected frames plus those ``include_snapshots_of`` carries (see ``carry``)."""
        data = self.request.data
        found = await snapshot.fetch_selection(self.deps.features, data)
        carried = await asyncio.to_thread(
            carry.carried_frames, self.deps.objects, list(data.include_snapshots_of),
            self.deps.settings.carried_train_frames)
        if carried.entries:
            query = feature_store_service_pb2.ListObservationsRequest(
                observation_ids=list(carried.entries), labelled_only=True, include_jpeg=True
            )
            # Frames of the new selection that an old snapshot also holds stay old-world
            # (or stay out, when the budget left them out).
            found = [o for o in found if o.observation_id not in carried.entries
                     and o.observation_id not in carried.left_out]
            found += await snapshot.fetch_observations(self.deps.features, query)
        return sorted(found, key=lambda o: (o.time.ToNanoseconds(), o.observation_id)), carried

    def start_tracking(self, snap: snapshot.Snapshot) -> None:
        """The MLflow parent run with lineage tags and the snapshot as dataset input."""
        settings = self.deps.settings
        client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
        experiment_id = ensure_experiment(
            client, self.sweep.experiment, artifact_root(settings, self.deps.work_dir)
        )
        tags = {
            "sweep_id": self.sweep.sweep_id,
            "dataset_snapshot": snap.snapshot_id,
            "trigger": self.sweep.trigger,
            "git_sha": git_sha(),
            "trace_id": self.sweep.trace_id,
            "model_name": self.sweep.model_name,
        }
        if self.warm:
            tags["warm_start_version"] = self.warm.version
        self.tracking = SweepTracking(client, experiment_id, tags)
        values = self.search_values()
        self.sweep.mlflow_experiment_id = experiment_id
        self.sweep.mlflow_parent_run_id = self.tracking.start_parent(
            f"sweep-{self.sweep.sweep_id}",
            {f"space_{k}": v for k, v in values.items()} | {"num_trials": self.sweep.num_trials},
        )
        self.tracking.log_snapshot(
            object_uri(self.deps.objects, snap.to_proto().manifest_key),
            snap.snapshot_id,
            snap.content_hash,
            snap.manifest["split_counts"],
        )

    def fit_resources(self) -> tune.TrialResources:
        """The trials' CPUs: as many at once as the request asks, else as the trainer's
        ``EDGELOOP_MAX_CONCURRENT_TRIALS`` says, else as fit the cluster's CPUs."""
        settings = self.deps.settings
        return tune.fit_resources(
            self.deps.total_cpus,
            self.sweep.num_trials,
            self.request.max_concurrent_trials or settings.max_concurrent_trials,
            settings.tf_threads,
            precision.min_cpus_per_trial(settings.train_precision),
            self.deps.node_cpus,
        )

    async def tune(self, snap: snapshot.Snapshot) -> tune.TuneOutcome:
        """Run the Ray Tune sweep in a worker thread, reporting progress."""
        values = self.search_values()
        resources = self.fit_resources()
        self.sweep.max_concurrent_trials = resources.concurrent
        plan = tune.SweepPlan(
            self.sweep.sweep_id,
            snap.arrays_path,
            values,
            self.sweep.num_trials,
            resources,
            int(self.request.seed or snap.manifest["seed"]) % 2**32,
            self.folder / "ray",
            {"init_weights": str(self.warm.weights_path)} if self.warm else {},
            self.deps.settings.train_precision,
            self.deps.settings.train_epoch_frames,
        )
        hooks = Progress(self, asyncio.get_running_loop())
        outcome = await asyncio.to_thread(tune.run_sweep, plan, hooks)
        self.sweep.best_trial_id = outcome.trial_id
        return outcome

    async def register(self, snap: snapshot.Snapshot, outcome: tune.TuneOutcome) -> None:
        """Export, evaluate on the holdout, log to MLflow, register; record the answer."""
        assert self.tracking is not None
        run_id = self.tracking.trial_runs[outcome.trial_id]
        champion_errors: dict[str, Any] = {}
        candidate = await self.tensorflow.run(
            holdout.export_candidate, outcome, snap.arrays_path, self.folder
        )
        with tracer.start_as_current_span("sweep.evaluate_holdout"):
            evaluation = await self._while_registry_down(
                lambda: self._evaluate(snap, candidate, champion_errors))
        # done with TensorFlow: its exit (~0.7 s of teardown) runs beside MLflow's logging
        # and the registration, and the sweep's end waits for it
        self.tensorflow.close_soon()
        with tracer.start_as_current_span("sweep.log_model", attributes={"mlflow.run_id": run_id}):
            seconds = await asyncio.to_thread(
                registration.log_pyfunc,
                self.deps.settings.mlflow_tracking_uri,
                run_id,
                candidate.saved_model_dir,
            )
            await asyncio.to_thread(warm_start.log_weights, self.deps.settings.mlflow_tracking_uri,
                                    run_id, outcome.checkpoint_dir, outcome.config)
        log.info("model logged", extra={"run_id": run_id, "seconds": round(seconds, 3)})
        metrics = {"holdout_mae_mm": candidate.holdout_mae_mm, "val_mae_mm": outcome.val_mae_mm,
                   **registration.world_metrics(candidate.errors, champion_errors.get("errors"),
                                                snap.manifest)}
        self.tracking.client.log_metric(run_id, "holdout_mae_mm", candidate.holdout_mae_mm)
        with tracer.start_as_current_span("sweep.register_version"):
            answer = await self._while_registry_down(
                lambda: self._register_version(run_id, metrics, evaluation))
        self.sweep.holdout_mae_mm = candidate.holdout_mae_mm
        self.sweep.model_version, self.sweep.promoted = answer.version, answer.promoted
        self.sweep.promotion_note = answer.note
        await self.manager.emit(
            self.sweep,
            S.SWEEP_EVENT_TYPE_VERSION_REGISTERED,
            f"registered {self.sweep.model_name} version {answer.version}",
            metrics=metrics, at=answer.decided_at,
        )
        await self.manager.emit(
            self.sweep,
            S.SWEEP_EVENT_TYPE_PROMOTION,
            ("promoted: " if answer.promoted else "not promoted: ") + answer.note,
            # the gate's own time: the deployments following the alias may switch before
            # this answer arrives, and the event must not say the promotion came after them
            at=answer.decided_at,
        )
        await asyncio.to_thread(self._write_results, snap, outcome, evaluation)

    async def _while_registry_down(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried while the registry is unreachable, up to ``registry_wait_s``.

        A sweep that trained for minutes should not be thrown away because the registry
        restarts: it says it waits (a WAITING event) and goes on when the registry answers.
        """
        limit = self.deps.settings.registry_wait_s
        started, delay, said = time.monotonic(), REGISTRY_RETRY_S, False
        while True:
            try:
                return await call()
            except Unavailable as exc:
                waited = time.monotonic() - started
                if waited >= limit:
                    raise Unavailable(f"{exc.message} (waited {waited:.0f} s, "
                                      f"EDGELOOP_REGISTRY_WAIT_S={limit:.0f})") from exc
                if not said:
                    await self.manager.emit(self.sweep, S.SWEEP_EVENT_TYPE_WAITING,
                                            f"waiting for the registry (up to {limit:.0f} s): "
                                            f"{exc.message}")
                    said = True
                log.warning("registry unreachable; waiting", extra={"error": exc.message})
                await asyncio.sleep(min(delay, max(0.0, limit - waited)))
                delay = min(delay * 2, REGISTRY_RETRY_MAX_S)
                self._check_cancel()

    async def _evaluate(self, snap: snapshot.Snapshot, candidate: Any,
                        champion_errors: dict[str, Any]) -> Any:
        return await registration.evaluate(
            self.deps.registry,
            self.deps.settings.registry_token,
            self.sweep.model_name,
            snap.content_hash,
            candidate,
            snap.arrays_path,
            lambda saved, arrays: self.tensorflow.run(holdout.holdout_errors, saved, arrays),
            champion_errors,
        )

    async def _register_version(self, run_id: str, metrics: dict[str, float],
                                evaluation: Any) -> Any:
        assert self.tracking is not None
        return await registration.register(
            self.deps.registry,
            self.deps.settings.registry_token,
            {
                "model_name": self.sweep.model_name,
                "run_id": run_id,
                "metrics": metrics,
                "tags": self.tracking.tags,
                "promote": self.request.promote,
                # a retry after a lost answer finds this sweep's version, not a second one
                "request_id": f"sweep-{self.sweep.sweep_id}",
            },
            evaluation,
        )

    def _write_results(
        self, snap: snapshot.Snapshot, outcome: tune.TuneOutcome, evaluation: Any
    ) -> None:
        reference = snapshot.load_reference(self.deps.objects, snap.snapshot_id)
        reference["holdout_mae_mm"] = self.sweep.holdout_mae_mm
        snapshot.save_reference(self.deps.objects, snap.snapshot_id, reference)
        summary = {
            "sweep_id": self.sweep.sweep_id,
            "snapshot_id": snap.snapshot_id,
            "content_hash": snap.content_hash,
            "best_trial_id": outcome.trial_id,
            "best_config": outcome.config,
            "val_mae_mm": outcome.val_mae_mm,
            "holdout_mae_mm": self.sweep.holdout_mae_mm,
            "champion_version": evaluation.champion_version,
            "champion_mae_mm": evaluation.champion_mae_mm,
            "model_version": self.sweep.model_version,
            "promoted": self.sweep.promoted,
            "promotion_note": self.sweep.promotion_note,
            "mlflow_parent_run_id": self.sweep.mlflow_parent_run_id,
        }
        self.deps.objects.put(
            f"{snapshot.prefix(self.sweep.sweep_id)}/summary.json",
            json.dumps(summary, indent=1).encode(),
            "application/json",
        )

    def close_tracking(self, status: str) -> None:
        """End the MLflow runs (best effort: a broken tracking store must not hide the cause)."""
        if self.tracking is not None:
            try:
                self.tracking.finish(
                    status,
                    {"holdout_mae_mm": self.sweep.holdout_mae_mm}
                    if self.sweep.model_version
                    else None,
                )
            except Exception:
                log.exception("could not close the MLflow runs")


class Progress:
    """Tune callbacks -> MLflow runs (on the Tune thread) and events + trial table (on the loop)."""

    def __init__(self, run: SweepRun, loop: asyncio.AbstractEventLoop) -> None:
        self.run = run
        self.loop = loop
        self.best = float("inf")
        self.cpus_handed_on = False
        """Whether a rung gave the CPUs of the trials it stopped to those going on."""

    def _on_loop(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def _trial(self, trial_id: str) -> S.Trial:
        for trial in self.run.sweep.trials:
            if trial.trial_id == trial_id:
                return trial
        return self.run.sweep.trials.add(trial_id=trial_id)

    def trial_started(self, trial_id: str, params: dict[str, Any], resumed: bool) -> None:
        # a restarted or resumed trial keeps its MLflow run (Tracking.start_trial)
        run_id = self.run.tracking.start_trial(trial_id, params) if self.run.tracking else ""
        self._on_loop(self._started(trial_id, params, run_id, resumed))

    async def _started(self, trial_id: str, params: dict[str, Any], run_id: str,
                       resumed: bool) -> None:
        trial = self._trial(trial_id)
        # Tune starts a trial again when its worker died (tune.TRIAL_RETRIES)
        again = bool(trial.mlflow_run_id)
        trial.state, trial.mlflow_run_id = "RUNNING", run_id
        trial.params.update({k: str(v) for k, v in params.items()})
        if resumed:
            kind = S.SWEEP_EVENT_TYPE_TRIAL_RESUMED
            message = (f"trial {trial_id} resumed after epoch {trial.epochs_done}: among the "
                       "best at its rung")
        else:
            kind = S.SWEEP_EVENT_TYPE_TRIAL_STARTED
            message = (f"trial {trial_id} started again after its worker failed, from its "
                       f"last checkpoint (epoch {trial.epochs_done} reported)" if again
                       else f"trial {trial_id} started: {params}")
        await self.run.manager.emit(self.run.sweep, kind, message, trial_id=trial_id)

    def trial_paused(self, trial_id: str, epoch: int, cpus: float) -> None:
        self._on_loop(self._paused(trial_id, epoch, cpus))

    async def _paused(self, trial_id: str, epoch: int, cpus: float) -> None:
        self._trial(trial_id).state = "PAUSED"
        self.cpus_handed_on = self.cpus_handed_on or bool(cpus)
        why = (f"to go on with {cpus:g} CPUs, freed by the trials its rung stopped" if cpus
               else "until every trial has reached it")
        await self.run.manager.emit(
            self.run.sweep, S.SWEEP_EVENT_TYPE_TRIAL_PAUSED,
            f"trial {trial_id} paused after epoch {epoch} {why}",
            trial_id=trial_id, epoch=epoch)

    def epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None:
        if self.run.tracking:
            self.run.tracking.log_epoch(trial_id, epoch, metrics)
        self._on_loop(self._epoch(trial_id, epoch, metrics))

    async def _epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None:
        trial = self._trial(trial_id)
        trial.epochs_done = epoch
        trial.best_val_mae_mm = metrics.get("best_val_mae_mm", metrics.get(tune.METRIC, 0.0))
        await self.run.manager.emit(
            self.run.sweep,
            S.SWEEP_EVENT_TYPE_EPOCH,
            f"trial {trial_id} epoch {epoch}: val_mae_mm "
            f"{metrics.get(tune.METRIC, float('nan')):.1f}",
            trial_id=trial_id,
            epoch=epoch,
            metrics=metrics,
        )
        value = metrics.get(tune.METRIC, float("inf"))
        score = metrics.get(tune.SCORE, value)  # what Tune selects by (tune module doc)
        if score < self.best:
            self.best = score
            self.run.sweep.best_trial_id = trial_id
            forgets = metrics.get("val_forgetting_mm", 0.0)
            await self.run.manager.emit(
                self.run.sweep,
                S.SWEEP_EVENT_TYPE_BEST_SO_FAR,
                f"best so far: trial {trial_id} val_mae_mm {value:.1f}"
                + (f", forgetting {forgets:.1f} mm of an old world" if forgets else ""),
                trial_id=trial_id,
                epoch=epoch,
                metrics={tune.METRIC: value, tune.SCORE: score},
            )

    def trial_finished(self, trial_id: str, status: str) -> None:
        if self.run.tracking:
            self.run.tracking.end_trial(trial_id, status)
        self._on_loop(self._finished(trial_id, status))

    async def _finished(self, trial_id: str, status: str) -> None:
        trial = self._trial(trial_id)
        trial.state = status
        if self._none_waiting():
            # no trial waits for this one's CPU: the registration's child imports
            # TensorFlow on it while the last trials train, not after them. One trial at a
            # time, that is after the last: beside it, the child's import would add its
            # ~270 MiB to the sweep's peak for ~5 s of the registration (bench/README).
            self.run.tensorflow.start()
        await self.run.manager.emit(
            self.run.sweep,
            S.SWEEP_EVENT_TYPE_TRIAL_FINISHED,
            f"trial {trial_id} {status.lower()} after {trial.epochs_done} "
            f"epochs (best val_mae_mm {trial.best_val_mae_mm:.1f})",
            trial_id=trial_id,
            metrics={"best_val_mae_mm": trial.best_val_mae_mm},
        )

    def _none_waiting(self) -> bool:
        """Every trial has started, fewer are left (running or paused) than run at once,
        and the CPUs they left are not handed on to the trials going on (halving)."""
        sweep = self.run.sweep
        left = sum(t.state in ("PENDING", "RUNNING", "PAUSED") for t in sweep.trials)
        return (len(sweep.trials) >= sweep.num_trials
                and left < max(1, sweep.max_concurrent_trials)
                and not (left and self.cpus_handed_on))


def artifact_root(settings: Settings, work_dir: Path) -> str:
    """Where new experiments keep artifacts when the tracking store is local."""
    if settings.mlflow_artifact_root:
        return settings.mlflow_artifact_root
    if settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks")):
        return ""  # the tracking server decides (proxied artifacts)
    return (work_dir / "mlflow-artifacts").resolve().as_uri()


def object_uri(objects: ObjectStore, key: str) -> str:
    """A URI of an object for lineage records (file:// or s3://)."""
    if isinstance(objects, LocalFolderStore):
        return (objects.root / key).resolve().as_uri()
    return f"s3://{getattr(objects, 'bucket', 'edgeloop')}/{key}"


def default_work_dir() -> Path:
    """A private temporary work folder when EDGELOOP_WORK_DIR is not set."""
    return Path(tempfile.mkdtemp(prefix="edgeloop-trainer-"))
