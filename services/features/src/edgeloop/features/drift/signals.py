"""The value of each drift signal over a window, judged against the training reference.

The reference is the ``reference.json`` saved with the serving model's training
snapshot (see CONTRIBUTING.md). A model retrained after a drift has seen several
worlds (the old one and the new one); when the reference lists them under
``groups`` (one entry per source deployment), a window is compared with each world
and the *closest* one counts: a red window is no drift for a model trained on beige
and red, although it is far from the mixture of both. That is what keeps the loop
from flapping after a retrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from edgeloop.features.drift.rules import LABEL_STATISTICS, Rule
from scipy.spatial.distance import jensenshannon


@dataclass(frozen=True)
class Window:
    """The recent observations of one deployment, as columns."""

    columns: dict[str, np.ndarray]
    """Per statistic (and sensor_mm, prediction_mm, abs_error_mm), NaN where missing."""
    times: dict[str, np.ndarray] | None = None
    """Per column, the capture time (datetime64[us], UTC) of each value, when known."""
    answered: np.ndarray | None = None
    """Over the rows of the world's columns (statistics, sensor_mm): which ones the serving
    version answered, i.e. the rows of the model's columns (prediction_mm, abs_error_mm);
    None when they are the same rows. They differ while robots still send answers of the
    version before (a device's own model, a gateway process not yet switched)."""

    @property
    def size(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def values(self, name: str) -> np.ndarray:
        column = self.columns[name]
        return column[np.isfinite(column)]

    def value_times(self, name: str) -> np.ndarray | None:
        """The capture times of :meth:`values` (None when the window has no times)."""
        if self.times is None:
            return None
        return self.times[name][np.isfinite(self.columns[name])]


@dataclass(frozen=True)
class SignalValue:
    """A rule's measurement: the value, the samples behind it, and the limit applied."""

    value: float | None
    samples: int
    threshold: str
    exceeded: bool = False
    onset: np.datetime64 | None = None
    """Where the change began, when the signal can tell (CUSUM: its last zero)."""


def _worlds(reference: dict[str, Any]) -> list[dict[str, Any]]:
    groups = reference.get("groups") or {}
    return list(groups.values()) or [reference]


def _histogram(world: dict[str, Any], statistic: str) -> dict[str, Any] | None:
    if statistic in LABEL_STATISTICS:
        return world.get("label_histogram")
    return (world.get("stats") or {}).get(statistic, {}).get("histogram")


def js_distance(values: np.ndarray, histogram: dict[str, Any]) -> float:
    """Jensen–Shannon distance (base 2) of ``values`` to a reference histogram.

    Both are binned on the reference edges plus an underflow and an overflow bin, so a
    window that leaves the reference's range counts as maximally different there.
    """
    edges = np.asarray(histogram["edges"], dtype=np.float64)
    reference = np.concatenate([[0.0], np.asarray(histogram["counts"], dtype=np.float64), [0.0]])
    bins = np.concatenate([[-np.inf], edges, [np.inf]])
    window, _ = np.histogram(values, bins=bins)
    if window.sum() == 0 or reference.sum() == 0:
        return 0.0
    return float(jensenshannon(window / window.sum(), reference / reference.sum(), base=2))


def _window_mean(rule: Rule, window: Window, reference: dict[str, Any] | None) -> SignalValue:
    values = window.values(rule.statistic or "")
    if len(values) < rule.min_samples:
        return SignalValue(None, len(values), _band_text(rule, None))
    mean = float(values.mean())
    means = [w.get("stats", {}).get(rule.statistic, {}).get("mean")
             for w in _worlds(reference or {})]
    means = [m for m in means if m is not None] or [None]
    # In band for any world the model was trained on means no drift.
    exceeded = all(rule.threshold.exceeded(mean, m) for m in means)
    closest = min(means, key=lambda m: 0 if m is None else abs(m - mean))
    return SignalValue(mean, len(values), _band_text(rule, closest), exceeded)


def _band_text(rule: Rule, reference_mean: float | None) -> str:
    lo, hi = rule.threshold.effective_band(reference_mean)
    return f"outside [{lo:.1f}, {hi:.1f}]"


def _js(rule: Rule, window: Window, reference: dict[str, Any] | None) -> SignalValue:
    values = window.values(rule.statistic or "")
    limit = f"> {rule.threshold.max}"
    histograms = [h for h in (_histogram(w, rule.statistic or "") for w in _worlds(reference or {}))
                  if h]
    if len(values) < rule.min_samples or not histograms:
        return SignalValue(None, len(values), limit)
    distance = min(js_distance(values, h) for h in histograms)
    return SignalValue(distance, len(values), limit, rule.threshold.exceeded(distance))


def _out_of_range(rule: Rule, window: Window, reference: dict[str, Any] | None) -> SignalValue:
    values = window.values(rule.statistic or "")
    if reference is None or reference.get("label_min_mm") is None:
        return SignalValue(None, len(values),
                           f"> {rule.threshold.max:.0%} outside the trained range")
    lo = reference["label_min_mm"] - rule.tolerance_mm
    hi = reference["label_max_mm"] + rule.tolerance_mm
    limit = f"> {rule.threshold.max:.0%} outside [{lo:.0f}, {hi:.0f}] mm"
    if len(values) < rule.min_samples:
        return SignalValue(None, len(values), limit)
    share = float(np.mean((values < lo) | (values > hi)))
    return SignalValue(share, len(values), limit, rule.threshold.exceeded(share))


WORLD_STATISTICS = ("hue", "saturation", "mean_r", "mean_g", "mean_b")
"""The colour statistics that tell the trained worlds apart (the covariate rules' own)."""
AMBIGUITY_Z = 1.0
"""Worlds within this mean |z| of a frame's closest world are as likely its world."""
PRIOR_RUNS = 2.0
"""How many holdout runs of a world the overall holdout MAE weighs as (see world_mae_mm)."""
THIN_HOLDOUT_RUNS = 3
"""A world judged on fewer holdout runs is never expected to be better than overall."""


def world_mae_mm(world: dict[str, Any], overall_mm: float) -> float:
    """The error level expected of the serving version on one of its worlds.

    The world's own holdout MAE over its n drive runs, shrunk toward the overall holdout MAE
    as if that were ``PRIOR_RUNS`` more runs: (n x world + 2 x overall) / (n + 2). A new
    world's holdout is typically one run, and one run's MAE is noisy both ways (in the
    quick demo of 2026-12-02 13:57 a version served green at 4-7 mm live but scored
    11.27 mm on green's single holdout run); unshrunk, its concept rules would have waited
    for errors of 28 mm. Runs not recorded (versions from before) count as one.

    A world with fewer than ``THIN_HOLDOUT_RUNS`` holdout runs is expected at the overall
    MAE at least: the gate promoted the version *because* it scored well there, so a lucky
    run is what a thin holdout usually shows. In the quick demo of 2026-12-02 16:44 the red
    floor's retrain scored 1.38 mm on its one red run (2.33 mm shrunk), served red at
    about 3.4 mm, and ``concept_mae_ratio`` fired 3 minutes after the recovery.
    """
    own = world.get("holdout_mae_mm")
    if not own:
        return overall_mm
    runs = float(world.get("holdout_runs") or 1)
    level = (runs * own + PRIOR_RUNS * overall_mm) / (runs + PRIOR_RUNS)
    return max(level, overall_mm) if runs < THIN_HOLDOUT_RUNS else level


def expected_errors(window: Window, reference: dict[str, Any] | None) -> np.ndarray | None:
    """Per labelled frame of ``window``, the error level expected of the serving version on
    the world the frame looks like; None without a holdout MAE.

    A version retrained after a drift knows several worlds, and its holdout MAE differs
    among them: a world learned from a few runs is harder than the one it learned from
    forty. Judging every frame against the overall MAE (mostly the old world's) made the
    concept rules fire on a freshly promoted version in its own new world. So each frame
    is judged against its world's level (:func:`world_mae_mm`, from the version's
    ``holdout_mae_mm/world/<w>`` and ``holdout_runs/world/<w>`` that ``ReferenceCache``
    puts in the world's group), the world chosen as the covariate rules choose it (the
    closest by colour statistics); a frame that looks like several worlds (within
    ``AMBIGUITY_Z``) is judged against the least accurate of them, so a concept alarm never
    comes from picking the wrong world. Worlds without their own MAE use the overall one.
    """
    holdout = (reference or {}).get("holdout_mae_mm")
    labelled = np.isfinite(window.columns["abs_error_mm"])
    if not holdout:
        return None
    worlds = _worlds(reference or {})
    maes = np.array([world_mae_mm(w, holdout) for w in worlds], np.float64)
    distances = [_colour_distance(window, labelled, w) for w in worlds]
    if len(worlds) == 1 or any(d is None for d in distances):
        return np.full(int(labelled.sum()), float(maes.max()))
    z = np.nan_to_num(np.vstack(distances), nan=0.0)  # worlds x frames
    candidates = z <= z.min(axis=0) + AMBIGUITY_Z
    return np.where(candidates, maes[:, None], 0.0).max(axis=0)


def _colour_distance(window: Window, labelled: np.ndarray,
                     world: dict[str, Any]) -> np.ndarray | None:
    """Mean |z| of each labelled frame's colour statistics against one world's."""
    scores = []
    for name in WORLD_STATISTICS:
        stats = (world.get("stats") or {}).get(name, {})
        if name in window.columns and stats.get("mean") is not None and stats.get("std"):
            values = _answered_rows(window, name)[labelled]
            scores.append(np.abs(values - stats["mean"]) / stats["std"])
    return np.mean(scores, axis=0) if scores else None


def _answered_rows(window: Window, name: str) -> np.ndarray:
    """A world column's values on the rows the serving version answered."""
    column = window.columns[name]
    return column if window.answered is None else column[window.answered]


def _mae_ratio(rule: Rule, window: Window, reference: dict[str, Any] | None) -> SignalValue:
    errors = window.values("abs_error_mm")
    expected = expected_errors(window, reference)
    limit = f"> {rule.threshold.max}x holdout MAE"
    if expected is None or len(errors) < rule.min_samples:
        return SignalValue(None, len(errors), limit)
    holdout = float(expected.mean())
    ratio = float(errors.mean() / holdout)
    return SignalValue(ratio, len(errors), f"{limit} ({holdout:.1f} mm)",
                       rule.threshold.exceeded(ratio))


def page_cusum(x: np.ndarray, allowance: float) -> tuple[float, int]:
    """Page's one-sided CUSUM of ``x`` (started at 0) with allowance k: its current value,
    and the index where it last left 0 (the change-point estimate; ``len(x)`` at 0)."""
    total, start = 0.0, len(x)
    for index, value in enumerate(x - allowance):
        if total == 0.0 and value > 0:
            start = index
        total = max(0.0, total + float(value))
    return total, (start if total > 0 else len(x))


def _cusum(rule: Rule, window: Window, reference: dict[str, Any] | None) -> SignalValue:
    limit = f"> {rule.threshold.max:g} (CUSUM, allowance {rule.allowance:g})"
    column = rule.statistic or "abs_error_mm"
    if rule.statistic is None:
        scores = _error_scores(window, reference)
    elif rule.statistic in LABEL_STATISTICS:
        scores = _outside_scores(rule, window, reference)
    else:
        scores = _z_scores(rule, window, reference)
    samples = len(window.values(column))
    if not scores or samples < rule.min_samples:
        return SignalValue(None, samples, limit)
    value, start = min(page_cusum(x, rule.allowance) for x in scores)
    times = window.value_times(column)
    onset = times[start] if times is not None and start < len(times) else None
    return SignalValue(value, samples, limit, rule.threshold.exceeded(value), onset)


def _error_scores(window: Window, reference: dict[str, Any] | None) -> list[np.ndarray]:
    expected = expected_errors(window, reference)
    return [window.values("abs_error_mm") / expected] if expected is not None else []


def _outside_scores(rule: Rule, window: Window,
                    reference: dict[str, Any] | None) -> list[np.ndarray]:
    if reference is None or reference.get("label_min_mm") is None:
        return []
    values = window.values(rule.statistic or "")
    lo = reference["label_min_mm"] - rule.tolerance_mm
    hi = reference["label_max_mm"] + rule.tolerance_mm
    return [((values < lo) | (values > hi)).astype(np.float64)]


def _z_scores(rule: Rule, window: Window, reference: dict[str, Any] | None) -> list[np.ndarray]:
    values = window.values(rule.statistic or "")
    scores = []
    for world in _worlds(reference or {}):
        stats = (world.get("stats") or {}).get(rule.statistic or "", {})
        mean, std = stats.get("mean"), stats.get("std")
        if mean is not None and std:
            scores.append(np.abs(values - mean) / std)
    # Each frame is scored against the trained world closest to it: driving from one known
    # world into another is no change for a model that knows both.
    return [np.min(scores, axis=0)] if scores else []


_SIGNALS = {"window_mean": _window_mean, "js_distance": _js,
            "out_of_range_share": _out_of_range, "mae_ratio": _mae_ratio, "cusum": _cusum}


def measure(rule: Rule, window: Window, reference: dict[str, Any] | None) -> SignalValue:
    """The rule's signal over ``window``; ``value`` is None when it cannot be evaluated."""
    return _SIGNALS[rule.signal](rule, window, reference)
