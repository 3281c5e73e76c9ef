"""What the demo measured, as plain data: saved as JSON beside the report and re-readable."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from edgeloop.compose.demo.distances import WIDER_RANGE_SHARE, phase_distances
from edgeloop.compose.demo.metrics import (
    DETECTION_TARGET_S,
    DRIFT_TARGET_RATIO,
    RECOVERY_TARGET_RATIO,
    SERVING_TARGET_S,
    ErrorStats,
    Target,
    ratio,
)


@dataclass
class PhaseResult:
    """One phase of the evaluation: errors before and after retraining, and how it went."""

    number: int
    title: str
    scenario: str
    before: ErrorStats | None = None
    after: ErrorStats | None = None
    version_before: str = ""
    version_after: str = ""
    sweep_id: str = ""
    promoted: bool | None = None
    retrain_s: float | None = None
    detection_s: float | None = None
    serving_s: float | None = None
    note: str = ""
    errors_before: list[float] = field(default_factory=list)
    errors_after: list[float] = field(default_factory=list)
    rule: str = ""
    """The first drift rule that fired after the change (monitored phases)."""
    rule_kind: str = ""
    onset_to_serving_s: float | None = None
    """The world's change to the first prediction of the retrained version."""
    false_alarms: list[str] = field(default_factory=list)
    """Drift events before the change (the serving model's own world)."""
    monitored: bool = False
    """Detected and retrained by the platform (False: retrained by hand)."""
    settled: ErrorStats | None = None
    """The next version serving the new world after the first retrain (monitored phases)."""
    version_settled: str = ""
    onset_to_settled_s: float | None = None
    """The world's change to the first prediction of the settled version."""
    settled_trigger: str = ""
    """What made it: ``consolidate:<sweep>`` (the monitor's consolidation) or ``drift:<event>``."""


@dataclass
class TimelinePoint:
    """One phase-5 frame for the timeline plot."""

    t_s: float
    saturation: float
    prediction_mm: float | None
    sensor_mm: float | None
    error_mm: float | None
    model_version: str


@dataclass
class LoopResult:
    """Phase 5's moments (seconds since the phase started) and its timeline."""

    red_at_s: float | None = None
    fired_at_s: float | None = None
    promoted_at_s: float | None = None
    serving_at_s: float | None = None
    rule: str = ""
    event_id: str = ""
    false_alarms: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    pre_drift: ErrorStats | None = None
    timeline: list[TimelinePoint] = field(default_factory=list)
    phase: int = 5
    kind: str = ""
    """The first event's drift kind (covariate, label, concept)."""

    @property
    def detection_s(self) -> float | None:
        return _diff(self.red_at_s, self.fired_at_s)

    @property
    def retrain_s(self) -> float | None:
        return _diff(self.fired_at_s, self.promoted_at_s)

    @property
    def switch_s(self) -> float | None:
        """Promotion to the first prediction from the new version."""
        return _diff(self.promoted_at_s, self.serving_at_s)

    @property
    def detection_to_serving_s(self) -> float | None:
        return _diff(self.fired_at_s, self.serving_at_s)

    @property
    def onset_to_serving_s(self) -> float | None:
        """The world's change to the first prediction of the retrained version."""
        return _diff(self.red_at_s, self.serving_at_s)


def _diff(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


@dataclass
class DemoResult:
    """The whole evaluation."""

    started_at: str
    mode: str
    model_name: str
    deployment: str
    phases: list[PhaseResult] = field(default_factory=list)
    loop: LoopResult | None = None
    """Phase 5's loop (the thesis's closed loop)."""
    loops: list[LoopResult] = field(default_factory=list)
    """Every monitored phase's loop, phase 5 included."""
    finished: bool = False
    failure: str = ""

    def pre_drift(self, number: int) -> ErrorStats | None:
        """The serving model's error in the world just before phase ``number``'s change.

        The same model version in the old world: phase n-1's 'after' for phases 2-4 (the
        champion that then meets the new world), the live beige warm-up for phase 5.
        """
        loop = next((lp for lp in self.loops if lp.phase == number), None)
        if loop is None and number == 5:
            loop = self.loop
        if loop is not None and loop.pre_drift is not None:
            return loop.pre_drift
        previous = next((p for p in self.phases if p.number == number - 1), None)
        return previous.after if previous else None

    def targets(self) -> list[Target]:
        """The issue's benchmark targets with the measured values."""
        found: list[Target] = []
        for phase in self.phases:
            if phase.number >= 2:
                pre = self.pre_drift(phase.number)
                found.append(Target(f"phase {phase.number} ({phase.scenario}) MAE before "
                                    "retraining / pre-drift MAE of the same version",
                                    ratio(phase.before.mae_mm if phase.before else None,
                                          pre.mae_mm if pre else None),
                                    DRIFT_TARGET_RATIO, "x", at_least=True))
        loops = self.loops or ([self.loop] if self.loop is not None else [])
        for loop in loops:
            pre = loop.pre_drift.mae_mm if loop.pre_drift else None
            phase = next((p for p in self.phases if p.number == loop.phase), None)
            n = loop.phase
            found += [
                Target(f"phase {n} detection delay (world change -> drift event)",
                       loop.detection_s, DETECTION_TARGET_S, "s"),
                Target(f"phase {n} world change -> retrained model serving",
                       loop.onset_to_serving_s, SERVING_TARGET_S, "s"),
                Target(f"phase {n} MAE after retraining / pre-drift MAE",
                       ratio(phase.after.mae_mm if phase and phase.after else None, pre),
                       RECOVERY_TARGET_RATIO, "x"),
            ]
            if phase is not None and phase.settled is not None:
                found.append(Target(f"phase {n} MAE once settled / pre-drift MAE",
                                    ratio(phase.settled.mae_mm, pre),
                                    RECOVERY_TARGET_RATIO, "x"))
            if phase is not None:
                found += _within_pre_drift_range(loop, phase, pre)
        return found

    def save(self, path: Path) -> None:
        """Write the result as JSON."""
        path.write_text(json.dumps(asdict(self), indent=1, default=_plain))

    @classmethod
    def load(cls, path: Path) -> DemoResult:
        """Read a result written by :meth:`save`."""
        raw = json.loads(path.read_text())
        phases = [PhaseResult(**{**p, "before": _stats(p["before"]), "after": _stats(p["after"]),
                                 "settled": _stats(p.get("settled"))})
                  for p in raw.pop("phases")]
        loop = _loop(raw.pop("loop"))
        loops = [_loop(lp) for lp in raw.pop("loops", [])]
        return cls(**raw, phases=phases, loop=loop, loops=[lp for lp in loops if lp])


def _within_pre_drift_range(loop: LoopResult, phase: PhaseResult,
                            pre: float | None) -> list[Target]:
    """The recovery ratio again on the new world's frames within the pre-drift distances.

    Shown when the new world reaches beyond them (a label shift): farther frames are harder
    for every model, so this tells how much of the ratio is the model and how much the range.
    """
    distances = phase_distances(loop, phase)
    span = distances.pre_drift_range
    if span is None or distances.share_beyond_pre_drift_range() < WIDER_RANGE_SHARE:
        return []
    after = distances.after_inside_pre_drift_range()
    name = (f"phase {loop.phase} MAE after retraining / pre-drift MAE, frames within the "
            f"pre-drift distances ({span[0]:.0f}-{span[1]:.0f} mm)")
    return [Target(name, ratio(after.mae_mm if after else None, pre), RECOVERY_TARGET_RATIO, "x")]


def _loop(raw: dict[str, Any] | None) -> LoopResult | None:
    if raw is None:
        return None
    raw["pre_drift"] = _stats(raw["pre_drift"])
    raw["timeline"] = [TimelinePoint(**t) for t in raw["timeline"]]
    return LoopResult(**raw)


def _stats(raw: dict[str, Any] | None) -> ErrorStats | None:
    return None if raw is None else ErrorStats(**raw)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot save {type(value).__name__}")
