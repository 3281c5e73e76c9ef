"""The drift timeline of one deployment: the demo's phase-5 plot, as live data for the page.

Three aligned series over the last minutes (image statistic with its rolling mean and
the band of the band rule; prediction vs sensor; absolute error with its rolling mean)
and the markers: drift events fired and resolved, sweeps started and finished, model
promotions and rollbacks, deployment changes, and the switches of the serving version
seen in the observations themselves.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from edgeloop.console.backends import Backends, when
from edgeloop.contracts.features.v1 import observation_pb2

ROLLING_S = 30.0
"""Window of the rolling means drawn over the per-frame points."""
STATISTICS = ("saturation", "hue", "brightness", "contrast", "sharpness", "edge_density",
              "entropy", "mean_r", "mean_g", "mean_b")
_BAND = re.compile(r"outside \[(-?[\d.]+), (-?[\d.]+)\]$")
"""The threshold text of a band rule (features drift/signals.py); label bands end in 'mm'."""
_MODEL_ACTIONS = {"promote": "promotion", "rollback": "rollback", "alias": "promotion"}


@dataclass
class Marker:
    """A vertical line on every panel of the plot."""

    t: float
    kind: str
    label: str


def _seconds(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def rolling_mean(times: list[float], values: list[float | None], window_s: float) -> list[
        float | None]:
    """Mean of the non-missing values in the trailing ``window_s`` of each point."""
    sums, counts = [0.0], [0]
    for value in values:
        sums.append(sums[-1] + (value if value is not None else 0.0))
        counts.append(counts[-1] + (value is not None))
    means: list[float | None] = []
    for i, t in enumerate(times):
        start = bisect_left(times, t - window_s)
        n = counts[i + 1] - counts[start]
        means.append((sums[i + 1] - sums[start]) / n if n else None)
    return means


def band_of(states: list[observation_pb2.RuleState]) -> dict[str, Any] | None:
    """The first band rule's [lo, hi] as the monitor evaluates it now, or None."""
    for state in states:
        found = _BAND.search(state.threshold)
        if found:
            return {"rule": state.rule, "lo": float(found[1]), "hi": float(found[2])}
    return None


def _switches(observations: list[observation_pb2.Observation]) -> list[Marker]:
    markers, previous = [], None
    for obs in observations:
        version = obs.model_version or "-"
        if previous is not None and version != previous:
            markers.append(Marker(_seconds(when(obs.time)) or 0.0, "switch",
                                  f"switch v{previous} → v{version}"))
        previous = version
    return markers


async def timeline(backends: Backends, deployment: str, statistic: str, minutes: float,
                   points: int) -> dict[str, Any]:
    """The plot's data and markers as JSON-ready values (times in Unix seconds)."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic: one of {', '.join(STATISTICS)}")
    window = timedelta(minutes=minutes)
    # Spread by the features service: a busy window's frames never leave the database whole.
    observations = await backends.observations(deployments=[deployment], since=window,
                                               limit=points, spread=True)
    times = [_seconds(when(o.time)) or 0.0 for o in observations]
    stat = [float(getattr(o.stats, statistic)) if o.HasField("stats") else None
            for o in observations]
    errors = [abs(o.error_mm) if o.HasField("error_mm") else None for o in observations]
    events = await backends.drift_events(deployment, limit=200)
    states = await backends.rule_states(deployment)
    markers = _switches(observations) + await _other_markers(backends, deployment, events, window)
    start = min(times) if times else None
    return {
        "deployment": deployment, "statistic": statistic,
        "t": times, "stat": stat, "stat_mean": rolling_mean(times, stat, ROLLING_S),
        "prediction": [o.prediction_mm if o.HasField("prediction_mm") else None
                       for o in observations],
        "sensor": [o.sensor_mm if o.HasField("sensor_mm") else None for o in observations],
        "error": errors, "error_mean": rolling_mean(times, errors, ROLLING_S),
        "version": [o.model_version for o in observations],
        "band": band_of(states) if statistic == "saturation" else None,
        "markers": [asdict(m) for m in sorted(markers, key=lambda m: m.t)
                    if start is None or m.t >= start - 60],
    }


async def _other_markers(backends: Backends, deployment: str,
                         events: list[observation_pb2.DriftEvent], window: timedelta,
                         ) -> list[Marker]:
    markers = []
    for event in events:
        fired, resolved = _seconds(when(event.fired_at)), _seconds(when(event.resolved_at))
        if fired is not None:
            markers.append(Marker(fired, "drift", f"drift: {event.rule}"))
        if resolved is not None:
            markers.append(Marker(resolved, "resolved", f"resolved: {event.rule}"))
    try:
        sweeps = await backends.sweeps()
    except Exception:  # noqa: BLE001 - a stopped trainer leaves the plot without sweep marks
        sweeps = []
    for sweep in sweeps:
        if sweep.deployment != deployment:
            continue
        for moment, text in ((sweep.created_at, "sweep started"),
                             (sweep.finished_at, "sweep finished")):
            seconds = _seconds(when(moment))
            if seconds is not None:
                markers.append(Marker(seconds, "sweep", f"{text} {sweep.sweep_id[:8]}"))
    current = await backends.deployment(deployment)
    subjects = [f"deployment/{deployment}"]
    if current.model_name:
        subjects.append(f"model/{current.model_name}")
    for subject in subjects:
        for record in await backends.history(subject, limit=100):
            seconds = _seconds(when(record.time))
            if seconds is None:
                continue
            # Only what changes the answers: alias moves, and deployment edits after creation.
            if subject.startswith("model/"):
                if record.action not in _MODEL_ACTIONS:
                    continue
                kind = _MODEL_ACTIONS[record.action]
            elif record.action == "create":
                continue
            else:
                kind = "change"
            markers.append(Marker(seconds, kind, f"{record.action} by {record.actor}"))
    return markers
