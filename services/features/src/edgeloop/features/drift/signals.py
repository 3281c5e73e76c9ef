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
from scipy.spatial.distance import jensenshannon

from edgeloop.features.drift.rules import LABEL_STATISTICS, Rule


@dataclass(frozen=True)
class Window:
    """The recent observations of one deployment, as columns."""

    columns: dict[str, np.ndarray]
    """Per statistic (and sensor_mm, prediction_mm, abs_error_mm), NaN where missing."""

    @property
    def size(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def values(self, name: str) -> np.ndarray:
        column = self.columns[name]
        return column[np.isfinite(column)]


@dataclass(frozen=True)
class SignalValue:
    """A rule's measurement: the value, the samples behind it, and the limit applied."""

    value: float | None
    samples: int
    threshold: str
    exceeded: bool = False


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
    means = [w.get("stats", {}).get(rule.statistic, {}).get("mean") for w in _worlds(reference or {})]
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
        return SignalValue(None, len(values), f"> {rule.threshold.max:.0%} outside the trained range")
    lo = reference["label_min_mm"] - rule.tolerance_mm
    hi = reference["label_max_mm"] + rule.tolerance_mm
    limit = f"> {rule.threshold.max:.0%} outside [{lo:.0f}, {hi:.0f}] mm"
    if len(values) < rule.min_samples:
        return SignalValue(None, len(values), limit)
    share = float(np.mean((values < lo) | (values > hi)))
    return SignalValue(share, len(values), limit, rule.threshold.exceeded(share))


def _mae_ratio(rule: Rule, window: Window, reference: dict[str, Any] | None) -> SignalValue:
    errors = window.values("abs_error_mm")
    holdout = (reference or {}).get("holdout_mae_mm")
    limit = f"> {rule.threshold.max}x holdout MAE"
    if not holdout or len(errors) < rule.min_samples:
        return SignalValue(None, len(errors), limit)
    ratio = float(errors.mean() / holdout)
    return SignalValue(ratio, len(errors), f"{limit} ({holdout:.1f} mm)", rule.threshold.exceeded(ratio))


_SIGNALS = {"window_mean": _window_mean, "js_distance": _js,
            "out_of_range_share": _out_of_range, "mae_ratio": _mae_ratio}


def measure(rule: Rule, window: Window, reference: dict[str, Any] | None) -> SignalValue:
    """The rule's signal over ``window``; ``value`` is None when it cannot be evaluated."""
    return _SIGNALS[rule.signal](rule, window, reference)
