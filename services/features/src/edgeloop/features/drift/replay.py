"""The rules over a recorded stream, offline: calibration and the no-false-alarm tests.

The live monitor reads windows from PostgreSQL every ``interval`` of wall-clock time. To
calibrate the rules on simulated drives (and to test that they stay quiet for 30
minutes), the same :func:`~edgeloop.features.drift.signals.measure` runs here over an
in-memory stream with *simulated* timestamps, evaluated every ``interval`` of simulated
time, with the monitor's decisions: a rule fires once its condition has held for
``pending``; a concept rule is held while a covariate or label rule is exceeded; windows
restart when the serving version changes. Events stay open (no resolution, no
cooldown): the first firing of each rule is what calibration and the tests look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from edgeloop.features.drift.rules import RuleSet
from edgeloop.features.drift.signals import measure
from edgeloop.features.drift.window import Recent

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Simulated time 0 of a replayed stream."""


@dataclass
class Stream:
    """A deployment's observations in capture order, ``t_s`` in simulated seconds."""

    t_s: np.ndarray
    model_versions: np.ndarray
    columns: dict[str, np.ndarray]

    def recent(self) -> Recent:
        """The whole stream as the monitor's :class:`Recent` (times on :data:`EPOCH`)."""
        micros = np.round(self.t_s * 1e6).astype("int64")
        times = np.datetime64(EPOCH.replace(tzinfo=None), "us") + micros.astype("timedelta64[us]")
        return Recent(times, self.model_versions, self.columns)


@dataclass
class Firing:
    """The first firing of a rule in a replay."""

    rule: str
    kind: str
    at_s: float
    value: float


@dataclass
class ReplayResult:
    """Firings in order, and the largest value each rule reached (its calibration margin)."""

    firings: list[Firing] = field(default_factory=list)
    peaks: dict[str, float] = field(default_factory=dict)

    def first(self, after_s: float = 0.0) -> Firing | None:
        """The first firing at or after ``after_s``."""
        return next((f for f in self.firings if f.at_s >= after_s), None)


def replay(rules: RuleSet, stream: Stream, references: dict[str, dict[str, Any] | None],
           start_s: float = 0.0, end_s: float | None = None) -> ReplayResult:
    """Evaluate ``rules`` every ``rules.interval`` of simulated time over ``stream``.

    ``references`` maps each model version to its training reference; the serving
    version at an evaluation is the version of the latest observation before it.
    """
    recent = stream.recent()
    step = rules.interval.total_seconds()
    end = float(stream.t_s[-1]) if end_s is None else end_s
    result = ReplayResult()
    pending: dict[str, float] = {}
    fired: set[str] = set()
    t = start_s + step
    while t <= end + 1e-9:
        index = int(np.searchsorted(stream.t_s, t, side="left"))
        if index:
            version = str(stream.model_versions[index - 1])
            _evaluate(rules, _until(recent, index), references.get(version), version, t,
                      pending, fired, result)
        t += step
    return result


def _until(recent: Recent, index: int) -> Recent:
    return Recent(recent.times[:index], recent.model_versions[:index],
                  {name: column[:index] for name, column in recent.columns.items()})


def _evaluate(rules: RuleSet, recent: Recent, reference: dict[str, Any] | None, version: str,
              t: float, pending: dict[str, float], fired: set[str], result: ReplayResult) -> None:
    now = EPOCH + timedelta(seconds=t)
    signals = {rule.name: measure(rule, recent.window(now - rule.window, version), reference)
               for rule in rules}
    shifted = any(signals[r.name].exceeded for r in rules if r.kind != "concept")
    for rule in rules:
        signal = signals[rule.name]
        if signal.value is not None:
            result.peaks[rule.name] = max(result.peaks.get(rule.name, 0.0), signal.value)
        held = rule.kind == "concept" and shifted and rule.name not in fired
        if not signal.exceeded or held:
            pending.pop(rule.name, None)
            continue
        since = pending.setdefault(rule.name, t)  # as the monitor: pending 0 fires at once
        if rule.name not in fired and t - since >= rule.pending.total_seconds():
            fired.add(rule.name)
            result.firings.append(Firing(rule.name, rule.kind, t, float(signal.value or 0.0)))
