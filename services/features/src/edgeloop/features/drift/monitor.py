"""The drift monitor: every rule, every active deployment, every interval.

Per (rule, deployment) a small state machine: ``ok`` → ``pending`` (condition holds,
waiting out the rule's pending period) → ``firing`` (an open drift event) → back to
``ok`` when the rule is quiet again (the event resolves), then ``cooldown``. A concept
rule is ``held`` while a covariate or label rule of the deployment is exceeded: the
error of a model shown another world is that world's doing, not concept drift. A
deployment with open events and no retraining yet gets one sweep (trigger = the first
event) once enough labelled data of the new world has arrived; the sweep's outcome
(promoted, refused by the gate, failed) is noted on its events. One sweep at a time per
deployment; a candidate the gate refuses is tried again with more data, and after the
third refusal the events stay open with the gate's reason (see ``retraining``). An
event whose retrained version serves but still exceeds the rule is ``superseded`` by a
new event about that version (which retrains again), never left open and forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edgeloop.features.drift.deployments import (
    ActiveDeployment,
    DeploymentSource,
    RegistryUnreachable,
)
from edgeloop.features.drift.events import CHANGE_POINT, DriftEventRow, DriftEvents
from edgeloop.features.drift.references import ReferenceCache
from edgeloop.features.drift.retraining import Retrainer
from edgeloop.features.drift.rules import Rule, RuleSet
from edgeloop.features.drift.signals import SignalValue, measure
from edgeloop.features.drift.window import HeldWindow
from edgeloop.platform import log_context
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _onset(signal: SignalValue, fallback: datetime) -> datetime:
    """The event's window start: where the signal says the change began, else the window's."""
    if signal.onset is None:
        return fallback
    return max(fallback, signal.onset.astype(datetime).replace(tzinfo=UTC))


@dataclass
class RuleTrack:
    """The live state of one rule for one deployment (what `edgeloop drift` shows)."""

    rule: Rule
    deployment: str
    status: str = "insufficient"
    pending_since: datetime | None = None
    signal: SignalValue | None = None
    evaluated_at: datetime | None = None


@dataclass
class DriftMonitor:
    """Evaluates the rules and drives drift events and retraining."""

    pool: AsyncConnectionPool
    rules: RuleSet
    deployments: DeploymentSource
    references: ReferenceCache
    retrainer: Retrainer | None
    clock: Callable[[], datetime] = utcnow
    tracks: dict[tuple[str, str], RuleTrack] = field(default_factory=dict)
    windows: dict[str, HeldWindow] = field(default_factory=dict)
    """Per active deployment, the rows of its windows held between evaluations."""

    def __post_init__(self) -> None:
        self.events = DriftEvents(self.pool)

    async def run(self) -> None:
        """Evaluate forever, every ``rules.interval``; errors are logged, not fatal.

        An unreachable registry (the services start all at once; a restart) is one warning
        when it begins and one line when it ends, not a stack trace every interval."""
        waiting_since: float | None = None
        while True:
            try:
                await self.evaluate_once()
                if waiting_since is not None:
                    log.info("registry reachable again; drift evaluation goes on",
                             extra={"waited_s": round(time.monotonic() - waiting_since, 1)})
                    waiting_since = None
            except asyncio.CancelledError:
                raise
            except RegistryUnreachable as exc:
                if waiting_since is None:
                    log.warning("drift evaluation waits for the registry",
                                extra={"reason": str(exc)})
                    waiting_since = time.monotonic()
            except Exception:
                log.exception("drift evaluation failed; retrying next interval")
            await asyncio.sleep(self.rules.interval.total_seconds())

    async def evaluate_once(self) -> None:
        """One pass over every active deployment; one that fails is logged and skipped, so
        it does not blind the monitor to the others."""
        active = await self.deployments.active()
        for name in set(self.windows) - {d.name for d in active}:
            del self.windows[name]
        for deployment in active:
            with log_context(deployment=deployment.name, model_version=deployment.model_version):
                try:
                    await self._evaluate(deployment)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("drift evaluation of this deployment failed; the others go "
                                  "on, it is tried again next interval")

    async def _evaluate(self, deployment: ActiveDeployment) -> None:
        now = self.clock()
        reference = await self.references.get(deployment.model_name, deployment.model_version)
        longest = max(rule.window for rule in self.rules)
        held = self.windows.setdefault(deployment.name, HeldWindow(deployment.name))
        recent = await held.read(self.pool, now - longest, now)
        open_events = {e.rule: e for e in await self.events.open_events(deployment.name)}
        signals = {rule.name: measure(rule, recent.window(now - rule.window,
                                                          deployment.model_version), reference)
                   for rule in self.rules}
        # Concept drift means: the model is wrong on inputs that look familiar. While the
        # inputs or the labels have left the trained world, the error rises for that
        # reason; a concept rule then waits (it neither fires nor resolves).
        shifted = any(signals[r.name].exceeded for r in self.rules if r.kind != "concept")
        for rule in self.rules:
            if rule.kind == "concept" and shifted and signals[rule.name].exceeded \
                    and rule.name not in open_events:
                self._hold(rule, deployment.name, signals[rule.name], now)
                continue
            await self._step(rule, deployment, signals[rule.name], open_events.get(rule.name), now)
        if self.retrainer is not None:
            await self.retrainer.follow(deployment, now)

    def track(self, rule: Rule, deployment: str) -> RuleTrack:
        key = (rule.name, deployment)
        if key not in self.tracks:
            self.tracks[key] = RuleTrack(rule, deployment)
        return self.tracks[key]

    def _hold(self, rule: Rule, deployment: str, signal: SignalValue, now: datetime) -> None:
        track = self.track(rule, deployment)
        track.signal, track.evaluated_at = signal, now
        track.status, track.pending_since = "held", None

    async def _step(self, rule: Rule, deployment: ActiveDeployment, signal: SignalValue,
                    open_event: DriftEventRow | None, now: datetime) -> None:
        track = self.track(rule, deployment.name)
        track.signal, track.evaluated_at = signal, now
        if signal.value is None:
            track.status, track.pending_since = "insufficient", None
        elif not signal.exceeded:
            track.pending_since = None
            if open_event is not None:
                await self.events.resolve(open_event.event_id, now)
                log.info("drift resolved", extra={"rule": rule.name, "value": signal.value})
            track.status = "cooldown" if await self._cooling(rule, deployment, now) else "ok"
        elif open_event is not None and self._answered_before(open_event, deployment):
            await self.events.supersede(
                open_event.event_id, now, f"superseded: version {deployment.model_version} "
                "serves and still exceeds the rule; a new event follows")
            log.info("drift event superseded", extra={"rule": rule.name,
                                                      "event_id": open_event.event_id})
            await self._arm(rule, deployment, signal, track, now)
        elif open_event is not None:
            track.status = "firing"
        else:
            await self._arm(rule, deployment, signal, track, now)

    def _answered_before(self, event: DriftEventRow, deployment: ActiveDeployment) -> bool:
        """Whether the event's retraining has ended and a newer version serves.

        Its rule then judges the version that serves now: still exceeded, that is new
        drift for this version (a new event, and a new retrain), not the old event's.
        An event still waiting for its retrain, or whose sweep runs, is not.
        """
        running = (self.retrainer is not None
                   and self.retrainer.is_running(deployment.name, event.sweep_id))
        return (bool(event.sweep_id) and event.model_version != deployment.model_version
                and not running)

    async def _arm(self, rule: Rule, deployment: ActiveDeployment, signal: SignalValue,
                   track: RuleTrack, now: datetime) -> None:
        """An exceeded rule without an open event: cooldown, pending, or fire."""
        if await self._cooling(rule, deployment, now):
            track.status = "cooldown"
            return
        # A rule without a pending period fires on the evaluation that sees it.
        track.pending_since = track.pending_since or now
        if now - track.pending_since >= rule.pending:
            await self._fire(rule, deployment, signal, track, now)
        else:
            track.status = "pending"

    async def _cooling(self, rule: Rule, deployment: ActiveDeployment, now: datetime) -> bool:
        """Whether the rule is in its cooldown for the version that serves now.

        A cooldown keeps a rule from flapping on the model it judged. A newer version is
        judged afresh: the next world's drift must not wait out its predecessor's event.
        """
        resolved = await self.events.last_resolved_at(rule.name, deployment.name,
                                                      deployment.model_version)
        return resolved is not None and now - resolved < rule.cooldown

    async def _fire(self, rule: Rule, deployment: ActiveDeployment, signal: SignalValue,
                    track: RuleTrack, now: datetime) -> None:
        values = {"value": float(signal.value or 0), "samples": float(signal.samples)}
        window_start = _onset(signal, now - rule.window)
        if signal.onset is not None:  # the signal dated the change (a CUSUM's change point)
            values[CHANGE_POINT] = window_start.timestamp()
        event = await self.events.open(DriftEventRow(
            event_id="", rule=rule.name, kind=rule.kind, deployment=deployment.name,
            model_name=deployment.model_name, model_version=deployment.model_version, state="open",
            values=values, threshold=signal.threshold, window_start=window_start,
            window_end=now,
            fired_at=now))
        track.status, track.pending_since = "firing", None
        log.warning("drift detected", extra={"rule": rule.name, "value": signal.value,
                                             "threshold": signal.threshold,
                                             "event_id": event.event_id})

    def states(self, deployment: str = "") -> list[RuleTrack]:
        """Live rule states, optionally of one deployment."""
        return [t for t in self.tracks.values() if not deployment or t.deployment == deployment]

