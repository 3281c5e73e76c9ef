"""Starting one retraining sweep per drifted deployment, and noting what came of it.

The sweep trains on the deployment's labelled data since the drift began (the
earliest open event's window start) plus the serving model's own training snapshot,
so the new model knows the new world without forgetting the old one.

When retraining starts (the rule): as soon as the new world's labelled data is enough
for the gate to judge it, i.e. at least ``min_samples`` labelled observations in at least
``min_runs`` drive runs (frames of one device session less than a second apart). The
trainer splits train / validation / holdout by run, so with four runs one whole run of
the new world is the holdout the gate judges on and one the validation; waiting longer
only delays the recovery (at 4 fps four runs take about 32 s).

The sweep fine-tunes the version the deployment serves (a warm start) unless that is
switched off: trained from scratch in a few epochs a model often forgets the old world,
which the registry's gate then refuses. A version that cannot be fine-tuned (registered
before warm starts existed) is retrained from scratch.

One sweep at a time per deployment. An event that fires while a sweep runs is answered by
that sweep when it is a slower rule seeing the same change late. When the monitor dated
the event's change (a CUSUM's change point) and the sweep's data holds too little after
it (the same rule as above, counted from the change point to the sweep's start), the
world changed again while the deployment retrained: the event waits, and once the
running sweep has ended and its version serves, a new sweep fine-tunes that version on
the new world. When the change began after the running sweep was started (its data holds
nothing of the new world), that sweep retrains a world the robots have left: it is
cancelled, its events are superseded (their note says by what), and the new world's sweep
fine-tunes the serving version as soon as its data is enough. Why: in the quick demos such
a sweep, often started by a small alarm on the version just promoted, held the new
world's retraining back by 60-100 s (phases 4 and 5 of the 14:16 run: 138 and 193 s
from the change to the new version serving).

A candidate the gate refuses is not the end: the events wait again, and a new sweep
starts once the new world has twice the labelled frames the refused one had (more data
to learn it and a larger holdout to judge it), up to ``MAX_ATTEMPTS`` sweeps per drift;
after the last refusal the events stay open with the gate's reason for an operator. The
count starts afresh when another version serves or no event is open any more.

A drift retrain learns the new world from its first few runs: fast, but partly (in the
quick demos the label and concept phases served at 1.3-2.6x their pre-drift error). Once
its version serves, the robots keep driving the new world; when that world has
``consolidate_factor`` times the labelled frames the drift retrain had (3x by default:
about 12 runs instead of 4), a *consolidation* sweep fine-tunes the serving version on all
of them, with the same start, so the first sweep's holdout runs stay holdout and the gate
judges on more runs. It is a follow-up, not a recovery: no drift event is attached, one
per drift, and it is dropped when another version serves first; a drift event while it
runs cancels it (the recovery comes first) and plans it again, so a drift that resolves
before its own retrain starts (the quick demo of 2026-12-04 09:07: phase 4's concept CUSUM
on a version that half knew the angled world fired, cancelled the consolidation and
resolved 10 s later) does not leave the world with its first, partial retrain. A refused
candidate leaves the serving version, and the plan is tried once more at twice the frames
the refused sweep had (``MAX_CONSOLIDATIONS``): in the quick demo of 2026-12-04 14:32 the
gate refused phase 2's consolidation as a tie (better on the new world, worse on beige,
judged on 2 and 3 holdout runs) and the world kept its first retrain at 2.2x its pre-drift
error. A plan not due within ``CONSOLIDATE_WITHIN`` is dropped (the robots left that
world, and its count is not queried forever). Kept in memory: after a restart of the
features service a pending consolidation is forgotten (the drift stays recovered).

A world its first retrain learnt too little: when a concept rule fires on a drift retrain's
version while its consolidation is pending (its errors grew, its images did not move), the
change it dates lies inside the world that version was retrained for. (On a consolidated
version it is a new change, retrained from where the rule dates it.) The retrain then takes
that world from its start (the consolidation's data, brought forward) once it has
``UNDERLEARNT_FACTOR`` times the frames the first retrain had, rather than a "new world" from
the dated change. Why: in the quick demo of 2026-12-05 15:37 the concept CUSUM fired on phase
4's first retrain and dated a change 88 s after the real one; the retrain from there left out
the minute of the angled world before it and judged the world on one holdout run, and its
version served that world worse (8.8 mm) than the one it replaced (7.1 mm).

A first retrain that fell short: the platform's aim for a recovered world is the error the
deployment had before the change. When the version a drift retrain promoted serves its new
world at ``shortfall_ratio`` times the replaced version's error in the two minutes before the
change or more (judged on at least half ``min_samples`` of its labelled answers), its
consolidation starts early, once the world has ``UNDERLEARNT_FACTOR`` times the frames the
first retrain had (trigger ``shortfall:<drift sweep>``; it is that plan, brought forward:
refused, it is planned again as usual). A consolidation is judged the same way once
promoted: when its version still serves the world at ``shortfall_ratio`` times the error
before the change or more by the time the world has ``UNDERLEARNT_FACTOR`` times the frames
the consolidation had, one more follows on all of them (trigger ``shortfall:<drift sweep>``),
up to ``MAX_FOLLOW_UPS`` per drift; one that serves within the aim ends the plan. Why: a
concept rule judges a version against its own holdout, and a first retrain's holdout of a
new world is one run: in the quick demo of 2026-12-06 00:10 the angled world's first retrain
scored 28.1 mm on its one angled holdout run, served the angle at 8.9 mm live (3.7x the
2.4 mm before the change) and no rule fired on it; its consolidation, promoted 2.5 min after
the change, served the angle at 10.0 mm (4.2x), and nothing followed.

A robot without a range sensor sends no labels. Its frames still feed the covariate
rules; when its world drifts, the sweep may use labelled frames of the same world from
any deployment of its data group. When there are none, no sweep is started (it could
not learn the new world): the events say "needs labelled data from data group X".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import grpc
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2, trainer_service_pb2_grpc
from edgeloop.features.drift.deployments import ActiveDeployment
from edgeloop.features.drift.events import (
    NEXT_SWEEP_FRAMES,
    REFUSED_SWEEPS,
    DriftEventRow,
    DriftEvents,
)
from edgeloop.features.drift.references import ReferenceCache
from edgeloop.platform import DEFAULT_DEADLINE_S
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)
STARTED_NOTE = "retraining: sweep"
NEEDS_LABELS_NOTE = "needs labelled data from data group"
WAITS_NOTE = "waits for retraining sweep"
MAX_ATTEMPTS = 3
"""Retraining sweeps per drift before a refusal is left to an operator."""
CANCEL_DEADLINE_S = 5.0
"""CancelSweep's deadline: the trainer answers once the sweep has stopped, which may take a
while; the cancel is under way once the call arrived, and the monitor sees the sweep end."""
START_SWEEP_DEADLINE_S = 60.0
"""StartSweep's deadline: the trainer checks the data and the version to fine-tune first,
which under a fleet's load takes far longer than a plain call. A call that times out is
retried with the same request_id."""
UNDERLEARNT_FACTOR = 2.0
"""A world its first retrain learnt too little is retrained from its start once it has this
many times the labelled frames that retrain had (module doc)."""
PRE_DRIFT_WINDOW = timedelta(minutes=2)
"""The replaced version's error before the change is measured over this long (module doc);
a promoted version's answers are looked for from this long before its promotion (capture
times come from the robots' clocks), so the query reads a time range, not the whole table."""
MAX_CONSOLIDATIONS = 2
"""Consolidations of one recovered drift the gate may refuse before the plan is dropped."""
MAX_FOLLOW_UPS = 2
"""Consolidations after a promoted one that fell short of the error before the change."""
CONSOLIDATE_WITHIN = timedelta(minutes=30)
"""A consolidation not due this long after its drift retrain's promotion is dropped."""
RUN_GAP = "1 second"
"""Frames of one device session further apart than this belong to different runs."""
_FINISHED = {sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep_pb2.SWEEP_STATE_FAILED,
             sweep_pb2.SWEEP_STATE_CANCELLED}


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def outcome_note(sweep: sweep_pb2.Sweep) -> str:
    """What a finished sweep means for the events that started it."""
    if sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED and sweep.promoted:
        return f"retrained by sweep {sweep.sweep_id}: version {sweep.model_version} promoted"
    if sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED:
        return (f"retrained by sweep {sweep.sweep_id}: version {sweep.model_version} refused by "
                f"the gate: {sweep.promotion_note}")
    state = sweep_pb2.SweepState.Name(sweep.state).removeprefix("SWEEP_STATE_").lower()
    return f"retraining sweep {sweep.sweep_id} {state}: {sweep.error or 'no reason given'}"


@dataclass
class RunningSweep:
    """The sweep retraining a deployment now, and where its new-world data ends."""

    sweep_id: str
    data_end: datetime | None
    """When the sweep was started (its data was selected up to then); None until known."""
    frames: int = 0
    """Labelled frames of the new world it was started with (0: unknown, after a restart)."""
    version: str = ""
    """The version that served when it started."""
    superseded: str = ""
    """Why the monitor cancelled it (a change after its start), once it did."""
    since: datetime | None = None
    """Where its new-world data begins (the selection's start); None after a restart."""
    consolidation: bool = False
    """A follow-up of a recovered drift (no events attached), not a drift retrain."""
    trace_id: str = ""
    plan: Consolidation | None = None
    """The plan a consolidation carries out (planned again if it gives way to a drift)."""
    pre_drift_mae_mm: float | None = None
    """For a world retrained from its start: the error before the change its first retrain's
    plan was judged against (the replaced version did not serve before that change)."""


@dataclass
class Consolidation:
    """A follow-up retrain due once the recovered world has more labelled data."""

    version: str
    """The version the drift retrain promoted; another version serving drops the plan."""
    since: datetime
    """Where the new world's data begins: the drift retrain's selection start."""
    due_frames: int
    """Labelled frames of the new world that start it."""
    after_sweep: str
    """The drift retrain it follows."""
    promoted_at: datetime
    """When ``version`` was seen promoted: its answers are looked for from a little before,
    and the plan is dropped when not due ``CONSOLIDATE_WITHIN`` after."""
    retrained_frames: int = 0
    """Labelled frames of the new world the drift retrain had."""
    attempt: int = 0
    """Consolidations of this plan started before (each gave way to a drift or was refused)."""
    refused: int = 0
    """Its candidates the gate refused."""
    pre_drift_mae_mm: float | None = None
    """The replaced version's live error before the change (None: too few labelled frames)."""
    follow_up: bool = False
    """It follows a promoted consolidation: it starts only if that version falls short."""
    follow_ups: int = 0
    """Follow-ups of this drift planned so far."""

    @property
    def expires(self) -> datetime:
        """Dropped when not due by then."""
        return self.promoted_at + CONSOLIDATE_WITHIN

    def request_id(self, deployment: str) -> str:
        """StartSweep's idempotency key: one per attempt (a retry returns its sweep)."""
        key = f"consolidate:{deployment}:{self.after_sweep}"
        return f"{key}:{self.attempt}" if self.attempt else key


@dataclass
class Attempts:
    """Refused retraining sweeps of a deployment's current drift."""

    version: str
    """The serving version they tried to replace; another version serving starts afresh."""
    refused: int = 0
    min_frames: int = 0
    """Labelled frames of the new world the next attempt waits for."""


class Retrainer:
    """Starts and follows the retraining sweeps of drifted deployments."""

    def __init__(self, pool: AsyncConnectionPool,
                 trainer: trainer_service_pb2_grpc.TrainerServiceStub,
                 references: ReferenceCache, min_samples: int, min_runs: int = 4,
                 warm_start: bool = True, trials: int = 0, epochs: int = 0,
                 max_samples: int = 0, consolidate_factor: float = 0.0,
                 shortfall_ratio: float = 0.0) -> None:
        self.pool = pool
        self.events = DriftEvents(pool)
        self.trainer = trainer
        self.references = references
        self.min_samples = min_samples
        self.min_runs = min_runs
        self.warm_start = warm_start
        self.trials = trials
        self.epochs = epochs
        """Epochs of a fine-tuning sweep (0: the trainer's default; never for one from scratch)."""
        self.max_samples = max_samples
        """The newest labelled frames of the new world a sweep takes at most (0: all)."""
        self.consolidate_factor = consolidate_factor
        """Consolidate a recovered world at this many times the drift retrain's frames (0: off)."""
        self.shortfall_ratio = shortfall_ratio
        """Consolidate early when the first retrain serves at this many times the error before
        the change (0: off; module doc)."""
        self.consolidations: dict[str, Consolidation] = {}
        """deployment → the follow-up retrain due for the world it recovered from."""
        self.running: dict[str, RunningSweep] = {}
        """deployment → the sweep retraining it now."""
        self.attempts: dict[str, Attempts] = {}
        """deployment → its refused sweeps since the last promotion."""

    def is_running(self, deployment: str, sweep_id: str) -> bool:
        """Whether ``sweep_id`` is the sweep retraining ``deployment`` now."""
        running = self.running.get(deployment)
        return running is not None and running.sweep_id == sweep_id

    async def follow(self, deployment: ActiveDeployment, now: datetime) -> None:
        """Note finished sweeps, then start one if the deployment drifted and none runs."""
        if deployment.name not in self.running:
            await self._recover(deployment)
        if deployment.name in self.running and await self._check_running(deployment.name, now):
            # A new version may serve now: the next evaluation sees it (and fine-tunes it).
            return
        if not deployment.model_name:
            return
        open_events = await self.events.open_events(deployment.name)
        attempts = self.attempts.get(deployment.name)
        if attempts and (not open_events or attempts.version != deployment.model_version):
            del self.attempts[deployment.name]  # that drift is over, or another version serves
        waiting = [e for e in open_events if not e.sweep_id]
        if not waiting:
            if deployment.name not in self.running:
                await self._consolidate(deployment, now)
            return
        if deployment.name in self.running:
            await self._answer_by_running(deployment.name, waiting)
            return
        if self._attempts(deployment.name).refused >= MAX_ATTEMPTS:
            return
        # The new world began where the first event says its change began (a CUSUM's
        # change point, else its window's start); later events' windows reach further back.
        first = min(waiting, key=lambda e: e.fired_at)
        since, min_frames = first.window_start, 0
        underlearnt = self._underlearnt_world(deployment, waiting)
        if underlearnt is not None:
            since = underlearnt.since
            min_frames = int(UNDERLEARNT_FACTOR * max(underlearnt.retrained_frames,
                                                      self.min_samples))
        scope, frames = await self._scope(deployment.name, since)
        if scope is not None and frames < min_frames:
            await self._note_once(waiting, f"waits for more of the world version "
                                  f"{deployment.model_version} was first retrained for "
                                  f"({frames} of {min_frames} labelled frames since it began), "
                                  "then retrains it from its start")
            return
        if scope is None:
            group = await self._data_group(deployment.name)
            note = (f"{NEEDS_LABELS_NOTE} {group or '(none)'}: this deployment's robots send no "
                    "labels and no labelled frame of the new world exists; a sweep could not "
                    "learn it")
            if await self._note_once(waiting, note):
                log.warning("drift without labelled data; no sweep", extra={"data_group": group})
            return
        request_id = f"drift:{deployment.name}:{first.event_id}:" \
                     f"{self._attempts(deployment.name).refused}"
        running = await self._start(deployment, f"drift:{waiting[-1].event_id}", since, scope,
                                    now, frames, request_id)
        if running is not None:
            # the new drift's retrain comes first; kept until then, a consolidation plan
            # survives a drift that resolves before it has the frames for a retrain. A retrain
            # of the underlearnt world keeps it: refused, it is tried again on that world.
            if underlearnt is None:
                self.consolidations.pop(deployment.name, None)
            else:
                running.pre_drift_mae_mm = underlearnt.pre_drift_mae_mm
                log.info("an error rule on a world's first retrain: that world retrained "
                         "from its start", extra={"sweep_id": running.sweep_id,
                                                  "after_sweep": underlearnt.after_sweep,
                                                  "frames": frames})
            event_ids = [e.event_id for e in waiting]
            await self.events.attach_sweep(event_ids, running.sweep_id, running.trace_id,
                                           f"{STARTED_NOTE} {running.sweep_id} started")
            log.info("retraining started", extra={"sweep_id": running.sweep_id,
                                                  "events": event_ids})

    def _underlearnt_world(self, deployment: ActiveDeployment,
                           waiting: list[DriftEventRow]) -> Consolidation | None:
        """The world the serving version was first retrained for, when the waiting events
        say that retrain learnt it too little rather than that the world changed again.

        That is when the version is a drift retrain whose consolidation is still pending and
        every waiting event is a concept rule on it: its errors grew, its images did not
        move (a covariate rule would have fired, and a concept rule waits while one does).
        Not a consolidated version (its plan a follow-up): it learnt its world from several
        times the first retrain's frames, so a concept rule on it dates a new change (the
        quick demo of 2026-12-07 00:19: the angled world's retrain taken from the green
        world's start, with 10 s of the angle, served the angle at 5.9x its error before).
        """
        plan = self.consolidations.get(deployment.name)
        if plan is None or plan.version != deployment.model_version or plan.follow_up:
            return None
        if any(e.kind != "concept" or e.model_version != plan.version for e in waiting):
            return None
        return plan

    async def _consolidate(self, deployment: ActiveDeployment, now: datetime) -> None:
        """Start the follow-up retrain of a recovered world once it has enough more data."""
        plan = self.consolidations.get(deployment.name)
        if plan is None:
            return
        if plan.version != deployment.model_version:
            del self.consolidations[deployment.name]  # another version serves: not its world
            return
        if now > plan.expires:
            del self.consolidations[deployment.name]
            log.info("consolidation dropped: not due in time", extra={
                "after_sweep": plan.after_sweep, "due_frames": plan.due_frames})
            return
        scope, frames = await self._scope(deployment.name, plan.since)
        if scope is None:
            return
        kind = await self._due(deployment.name, plan, frames)
        if kind is None:
            return
        running = await self._start(deployment, f"{kind}:{plan.after_sweep}", plan.since,
                                    scope, now, frames, plan.request_id(deployment.name))
        if running is None:
            return
        running.consolidation, running.plan = True, plan
        del self.consolidations[deployment.name]
        log.info("consolidation started", extra={"sweep_id": running.sweep_id, "frames": frames,
                                                 "after_sweep": plan.after_sweep})

    async def _due(self, deployment: str, plan: Consolidation, frames: int) -> str | None:
        """What starts the plan now: ``consolidate`` (its frames are there), ``shortfall`` (its
        version serves the world too far above the error before the change), or None (wait;
        a follow-up whose version serves within the aim is dropped). Module doc."""
        if not plan.follow_up and frames >= plan.due_frames:
            return "consolidate"
        waits = (frames < plan.due_frames if plan.follow_up
                 else not self._may_start_early(plan, frames))
        if waits:
            return None
        ratio = await self._shortfall(deployment, plan)
        if ratio is None:
            return None  # too few answers of the serving version yet
        if ratio < self.shortfall_ratio:
            if plan.follow_up:
                del self.consolidations[deployment]
                log.info("the consolidated world is served within the aim: no follow-up",
                         extra={"after_sweep": plan.after_sweep, "ratio": round(ratio, 2)})
            return None
        log.info("a retrain fell short of the error before the change: its world retrained "
                 "from its start", extra={"after_sweep": plan.after_sweep, "frames": frames,
                                          "pre_drift_mae_mm": plan.pre_drift_mae_mm,
                                          "ratio": round(ratio, 2)})
        return "shortfall"

    def _may_start_early(self, plan: Consolidation, frames: int) -> bool:
        """Whether a first retrain's consolidation, not due yet, may start on a shortfall."""
        return bool(self.shortfall_ratio) and not plan.attempt and not plan.refused \
            and frames >= UNDERLEARNT_FACTOR * max(plan.retrained_frames, self.min_samples)

    async def _shortfall(self, deployment: str, plan: Consolidation) -> float | None:
        """How many times the error before the change the plan's version serves its world
        at; None without that error or with too few labelled answers to judge (module doc)."""
        if plan.pre_drift_mae_mm is None:
            return None
        live_mm, answers = await self._live_error(deployment, plan.version,
                                                  plan.promoted_at - PRE_DRIFT_WINDOW)
        return live_mm / plan.pre_drift_mae_mm if answers >= self._judged_answers() else None

    def _judged_answers(self) -> int:
        """Labelled answers a version's live error is judged on (module doc)."""
        return max(self.min_samples // 2, 1)

    async def _live_error(self, deployment: str, version: str, since: datetime,
                          until: datetime | None = None) -> tuple[float, int]:
        """Mean absolute error of ``version``'s labelled answers to ``deployment`` in
        [``since``, ``until``) (no end when None) and how many there were."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT coalesce(avg(abs(error_mm)), 0), count(*) FROM features.observations "
                "WHERE deployment = %s AND model_version = %s AND error_mm IS NOT NULL "
                "AND time >= %s AND time < coalesce(%s, 'infinity'::timestamptz)",
                (deployment, version, since, until))
            mae, answers = await cursor.fetchone()
            return float(mae), int(answers)

    async def _pre_drift_error(self, deployment: str, version: str,
                               changed: datetime) -> float | None:
        """``version``'s live error in the ``PRE_DRIFT_WINDOW`` before ``changed``; None on
        too few labelled answers to judge."""
        mae, answers = await self._live_error(deployment, version, changed - PRE_DRIFT_WINDOW,
                                              changed)
        return mae if answers >= self._judged_answers() and mae > 0 else None

    async def _answer_by_running(self, deployment: str, waiting: list[DriftEventRow]) -> None:
        """Attach events the running sweep's data covers; the others wait for a new sweep.

        A window's rule firing late sees the change the sweep answers. A change the
        monitor dated (a CUSUM's change point) is covered only when the sweep's data holds
        enough of it, counted from the change point to the sweep's start.
        """
        running = self.running[deployment]
        if running.consolidation:
            await self._give_way(deployment, running, waiting)
            return
        if running.data_end is None:
            return  # not known yet (after a restart): decided once the trainer answers
        covered, later = [], []
        for event in waiting:
            (covered if await self._covers(deployment, running, event) else later).append(event)
        if covered:
            await self.events.attach_sweep([e.event_id for e in covered], running.sweep_id, "",
                                           f"{STARTED_NOTE} {running.sweep_id} started")
        if later and not await self._cancel_stale(deployment, running, later):
            await self._note_once(later, f"{WAITS_NOTE} {running.sweep_id} to end: its data "
                                  "holds too little of this drift's world; a new sweep follows")

    async def _give_way(self, deployment: str, running: RunningSweep,
                        waiting: list[DriftEventRow]) -> None:
        """A drift during a consolidation: the recovery comes first, the follow-up is cancelled."""
        if not running.superseded:
            if not await self._request_cancel(running.sweep_id):
                await self._note_once(waiting, f"{WAITS_NOTE} {running.sweep_id} (a "
                                      "consolidation the trainer could not cancel) to end")
                return
            running.superseded = f"superseded: a drift ({waiting[-1].rule}) during the " \
                                 "consolidation; its own retrain comes first"
            log.info("consolidation cancelled for a drift", extra={
                "sweep_id": running.sweep_id, "deployment": deployment,
                "rule": waiting[-1].rule})
        await self._note_once(waiting, f"{WAITS_NOTE} {running.sweep_id} to stop: a "
                              "consolidation gives way to a drift; a new sweep follows")

    async def _cancel_stale(self, deployment: str, running: RunningSweep,
                            later: list[DriftEventRow]) -> bool:
        """Cancel the running sweep when a change began after it started; True if asked to.

        Its data ends before the new world: its version would answer a world the robots
        have left, and waiting for it delays the new world's sweep (module doc). Only events
        on the version the sweep started from count: a version promoted since restarts its
        windows, so its CUSUMs date every change to its own first frames, after the start.
        """
        assert running.data_end is not None
        after = [e for e in later
                 if e.model_version == running.version and e.change_point is not None
                 and e.change_point >= running.data_end]
        if not after:
            return False
        if not running.superseded:
            if not await self._request_cancel(running.sweep_id):
                return False  # wait for it as before
            first = min(after, key=lambda e: e.change_point or e.fired_at)
            running.superseded = (f"superseded: the world changed again at "
                                  f"{first.change_point:%H:%M:%S} ({first.rule}) while sweep "
                                  f"{running.sweep_id} retrained the world before; it was "
                                  "cancelled and the new world's sweep follows")
            log.info("world changed during a retrain; its sweep cancelled",
                     extra={"sweep_id": running.sweep_id, "rule": first.rule})
        await self._note_once(later, f"{WAITS_NOTE} {running.sweep_id} to stop: it retrained "
                              "the world before this change; a new sweep follows")
        return True

    async def _request_cancel(self, sweep_id: str) -> bool:
        """CancelSweep; True when the trainer took it (or the sweep had ended already)."""
        try:
            await self.trainer.CancelSweep(trainer_service_pb2.CancelSweepRequest(
                sweep_id=sweep_id), timeout=CANCEL_DEADLINE_S)
        except aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                              grpc.StatusCode.FAILED_PRECONDITION):
                return True
            log.warning("could not cancel a sweep the world moved past",
                        extra={"sweep_id": sweep_id, "code": exc.code().name})
            return False
        return True

    async def _covers(self, deployment: str, running: RunningSweep, event: DriftEventRow) -> bool:
        changed = event.change_point
        if changed is None:
            return True
        return self._is_enough(await self._labelled_runs("deployment = %s", deployment, changed,
                                                         running.data_end))

    async def _note_once(self, events: list[DriftEventRow], note: str) -> bool:
        """Set ``note`` on the events that do not have it yet; True if there were any."""
        fresh = [e for e in events if e.note != note]
        if fresh:
            await self.events.set_note([e.event_id for e in fresh], note)
        return bool(fresh)

    async def _scope(self, deployment: str,
                     since: datetime) -> tuple[sweep_pb2.DataSelection | None, int]:
        """Where the new world's labels come from, once there are enough; None if nowhere.

        The deployment's own labelled frames first; for a deployment without labels, those of
        its data group. ``DataSelection()`` (empty) means: not enough yet, wait. The count is
        the new world's labelled frames found there.
        """
        own = await self._labelled_runs("deployment = %s", deployment, since)
        if own[0]:
            return self._enough_for(deployment, own,
                                    sweep_pb2.DataSelection(deployments=[deployment])), own[0]
        group = await self._data_group(deployment)
        if group:
            shared = await self._labelled_runs("data_group = %s", group, since)
            if shared[0]:
                return self._enough_for(deployment, shared,
                                        sweep_pb2.DataSelection(data_groups=[group])), shared[0]
        if await self._unlabelled_since(deployment, since):
            return None, 0
        return sweep_pb2.DataSelection(), 0

    def _is_enough(self, found: tuple[int, int]) -> bool:
        """Whether (labelled frames, runs) of a new world let the gate judge it."""
        frames, runs = found
        return frames >= self.min_samples and runs >= self.min_runs

    def _enough(self, found: tuple[int, int],
                scope: sweep_pb2.DataSelection) -> sweep_pb2.DataSelection:
        return scope if self._is_enough(found) else sweep_pb2.DataSelection()

    def _attempts(self, deployment: str) -> Attempts:
        return self.attempts.get(deployment) or Attempts(version="")

    def _enough_for(self, deployment: str, found: tuple[int, int],
                    scope: sweep_pb2.DataSelection) -> sweep_pb2.DataSelection:
        """Like ``_enough``; after a refusal also twice the frames of the refused sweep."""
        if found[0] < self._attempts(deployment).min_frames:
            return sweep_pb2.DataSelection()
        return self._enough(found, scope)

    async def _labelled_runs(self, where: str, value: str, since: datetime,
                             until: datetime | None = None) -> tuple[int, int]:
        """Labelled frames and drive runs (gaps over RUN_GAP start a run) since ``since``."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE gap IS NULL OR gap > INTERVAL "
                f"'{RUN_GAP}') FROM (SELECT time - lag(time) OVER (PARTITION BY device_id, "
                "session_id ORDER BY time) AS gap FROM features.observations WHERE "
                f"{where} AND time >= %s {'AND time < %s' if until else ''} "
                "AND sensor_mm IS NOT NULL) AS frames",
                (value, since, until) if until else (value, since))
            frames, runs = await cursor.fetchone()
            return int(frames), int(runs)

    async def _unlabelled_since(self, deployment: str, since: datetime) -> bool:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT EXISTS (SELECT 1 FROM features.observations WHERE "
                                        "deployment = %s AND time >= %s AND sensor_mm IS NULL)",
                                        (deployment, since))
            return bool((await cursor.fetchone())[0])

    async def _data_group(self, deployment: str) -> str:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT data_group FROM features.observations WHERE "
                                        "deployment = %s ORDER BY time DESC LIMIT 1", (deployment,))
            row = await cursor.fetchone()
            return row[0] if row else ""

    async def _start(self, deployment: ActiveDeployment, trigger: str, since: datetime,
                     scope: sweep_pb2.DataSelection, now: datetime, frames: int,
                     request_id: str) -> RunningSweep | None:
        """Start a sweep on the new world since ``since`` plus the serving version's snapshot.

        ``request_id`` (e.g. the first event and the attempt) makes retries safe. None when
        there is not enough data yet or the trainer could not be reached (tried again later).
        """
        if not (scope.deployments or scope.data_groups):
            return None  # not enough of the new world yet
        snapshot = self.references.snapshot_of(deployment.model_name, deployment.model_version)
        data = sweep_pb2.DataSelection(start_time=_timestamp(since),
                                       max_observations=self.max_samples,
                                       include_snapshots_of=[snapshot] if snapshot else [])
        data.deployments.extend(scope.deployments)
        data.data_groups.extend(scope.data_groups)
        request = trainer_service_pb2.StartSweepRequest(
            model_name=deployment.model_name, trigger=trigger, data=data,
            deployment=deployment.name, promote=True, num_trials=self.trials,
            request_id=request_id)
        if self.warm_start and deployment.model_version:
            request.warm_start.CopyFrom(deployment_pb2.VersionSelector(
                version=deployment.model_version))
            if self.epochs:
                request.search_space.epochs.append(self.epochs)
        try:
            reply = await self._start_sweep(request)
        except aio.AioRpcError as exc:
            log.warning("could not start a retraining sweep; retrying next interval",
                        extra={"code": exc.code().name, "details": exc.details()})
            return None
        running = RunningSweep(reply.sweep.sweep_id, now, frames, deployment.model_version,
                               since=since, trace_id=reply.sweep.trace_id)
        self.running[deployment.name] = running
        return running

    async def _start_sweep(self, request: trainer_service_pb2.StartSweepRequest
                           ) -> trainer_service_pb2.StartSweepResponse:
        """StartSweep; a version the trainer cannot fine-tune is retrained from scratch."""
        try:
            return await self.trainer.StartSweep(request, timeout=START_SWEEP_DEADLINE_S)
        except aio.AioRpcError as exc:
            refused = (exc.code() == grpc.StatusCode.FAILED_PRECONDITION
                       and (exc.details() or "").startswith("warm_start"))
            if not refused:
                raise
            log.warning("cannot fine-tune the serving version; retraining from scratch",
                        extra={"details": exc.details()})
            request.ClearField("warm_start")
            request.search_space.ClearField("epochs")  # from scratch: the trainer's default
            return await self.trainer.StartSweep(request, timeout=START_SWEEP_DEADLINE_S)

    async def _recover(self, deployment: ActiveDeployment) -> None:
        # After a restart the in-memory maps are empty; the open events remember the running
        # sweep and how many sweeps of this drift the gate refused.
        events = await self.events.open_events(deployment.name)
        if deployment.name not in self.attempts:
            refused = [e.values for e in events if e.model_version == deployment.model_version
                       and e.values.get(REFUSED_SWEEPS)]
            if refused:
                self.attempts[deployment.name] = Attempts(
                    deployment.model_version, int(max(v[REFUSED_SWEEPS] for v in refused)),
                    int(max(v.get(NEXT_SWEEP_FRAMES, 0) for v in refused)))
        for event in events:
            if event.sweep_id and event.note.startswith(STARTED_NOTE):
                self.running[deployment.name] = RunningSweep(event.sweep_id, None,
                                                             version=deployment.model_version)
                return

    async def _check_running(self, deployment: str, now: datetime) -> bool:
        """Follow the running sweep; True when it has just ended (its outcome is noted)."""
        running = self.running[deployment]
        try:
            reply = await self.trainer.GetSweep(
                trainer_service_pb2.GetSweepRequest(sweep_id=running.sweep_id),
                timeout=DEFAULT_DEADLINE_S)
        except aio.AioRpcError as exc:
            log.warning("cannot follow the retraining sweep", extra={"sweep_id": running.sweep_id,
                                                                     "code": exc.code().name})
            return False
        sweep = reply.sweep
        if running.data_end is None and sweep.HasField("created_at"):
            running.data_end = sweep.created_at.ToDatetime(tzinfo=UTC)
        if sweep.state not in _FINISHED:
            return False
        del self.running[deployment]
        log.info("retraining finished", extra={"sweep_id": running.sweep_id,
                                               "note": outcome_note(sweep)})
        if running.consolidation:
            if running.superseded and running.plan is not None \
                    and sweep.state == sweep_pb2.SWEEP_STATE_CANCELLED:
                # It gave way to a drift. When that drift gets its own retrain, the plan is
                # dropped as before; when it resolves first (a CUSUM on a world the version
                # half knows comes and goes), the follow-up must not be lost with it.
                self.consolidations[deployment] = replace(running.plan,
                                                          attempt=running.plan.attempt + 1)
            elif running.plan is not None and sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED \
                    and not sweep.promoted:
                self._consolidate_again(deployment, running.plan, running.frames)
            elif running.plan is not None and sweep.promoted:
                self._follow_up(deployment, running.plan, running.frames, sweep, now)
            return True  # no events to note; a refusal leaves the serving version, as it should
        if running.superseded and sweep.state == sweep_pb2.SWEEP_STATE_CANCELLED:
            await self._supersede_events(deployment, running, now)
        elif sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED and not sweep.promoted:
            await self._refused(deployment, running, sweep)
        else:
            if sweep.promoted:
                self.attempts.pop(deployment, None)
                await self._plan_consolidation(deployment, running, sweep, now)
            await self.events.note(running.sweep_id, outcome_note(sweep), sweep.trace_id)
        return True

    async def _plan_consolidation(self, deployment: str, running: RunningSweep,
                                  sweep: sweep_pb2.Sweep, now: datetime) -> None:
        """After a drift retrain's promotion: its world gets one follow-up with more data."""
        if running.consolidation or not self.consolidate_factor or running.since is None:
            return
        due = int(self.consolidate_factor * max(running.frames, self.min_samples))
        pre_drift = running.pre_drift_mae_mm
        if pre_drift is None and self.shortfall_ratio and running.version:
            pre_drift = await self._pre_drift_error(deployment, running.version, running.since)
        self.consolidations[deployment] = Consolidation(sweep.model_version, running.since, due,
                                                        sweep.sweep_id, now,
                                                        retrained_frames=running.frames,
                                                        pre_drift_mae_mm=pre_drift)
        log.info("consolidation planned", extra={"sweep_id": sweep.sweep_id, "due_frames": due,
                                                 "pre_drift_mae_mm": pre_drift})

    def _consolidate_again(self, deployment: str, plan: Consolidation, frames: int) -> None:
        """A refused consolidation: once more at twice its frames (more of the world to
        learn, more holdout runs to judge on), up to ``MAX_CONSOLIDATIONS`` refusals."""
        refused = plan.refused + 1
        if refused >= MAX_CONSOLIDATIONS:
            log.info("consolidation refused: the serving version stays",
                     extra={"after_sweep": plan.after_sweep, "refused": refused})
            return
        due = 2 * max(frames, plan.due_frames)
        self.consolidations[deployment] = replace(plan, due_frames=due, refused=refused,
                                                  attempt=plan.attempt + 1)
        log.info("consolidation planned again", extra={"after_sweep": plan.after_sweep,
                                                       "due_frames": due, "refused": refused})

    def _follow_up(self, deployment: str, plan: Consolidation, frames: int,
                   sweep: sweep_pb2.Sweep, now: datetime) -> None:
        """A promoted consolidation: one more follows if its version falls short of the error
        before the change once the world has twice its frames (module doc)."""
        if not self.shortfall_ratio or plan.pre_drift_mae_mm is None \
                or plan.follow_ups >= MAX_FOLLOW_UPS:
            return
        due = int(UNDERLEARNT_FACTOR * max(frames, self.min_samples))
        self.consolidations[deployment] = replace(
            plan, version=sweep.model_version, due_frames=due, promoted_at=now,
            retrained_frames=frames, attempt=plan.attempt + 1, refused=0, follow_up=True,
            follow_ups=plan.follow_ups + 1)
        log.info("a follow-up planned, should the consolidated version fall short",
                 extra={"after_sweep": plan.after_sweep, "due_frames": due})

    async def _supersede_events(self, deployment: str, running: RunningSweep,
                                now: datetime) -> None:
        """End the open events of a sweep the monitor cancelled, saying why."""
        for event in await self.events.open_events(deployment):
            if event.sweep_id == running.sweep_id:
                await self.events.supersede(event.event_id, now, running.superseded)

    async def _refused(self, deployment: str, running: RunningSweep,
                       sweep: sweep_pb2.Sweep) -> None:
        """The gate refused the candidate: try again with twice the data, or give up."""
        attempts = self.attempts.setdefault(deployment, Attempts(running.version))
        attempts.refused += 1
        if attempts.refused < MAX_ATTEMPTS:
            attempts.min_frames = 2 * max(running.frames, self.min_samples)
        await self.events.record_refusal(running.sweep_id, attempts.refused, attempts.min_frames)
        if attempts.refused >= MAX_ATTEMPTS:
            await self.events.note(running.sweep_id, f"{outcome_note(sweep)}; "
                                   f"{attempts.refused} sweeps refused: left to an operator",
                                   sweep.trace_id)
            return
        await self.events.detach(running.sweep_id, f"{outcome_note(sweep)}; retrying at "
                                 f"{attempts.min_frames} labelled frames of the new world "
                                 f"(attempt {attempts.refused + 1} of {MAX_ATTEMPTS})")
