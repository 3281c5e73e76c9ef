"""The drift rules file: its format, its loader and the meaning of each signal.

``rules.yaml`` (shipped beside this module) says what drift is. The features service's
drift monitor evaluates every rule for every active deployment; ``compose/grafana/
generate_alerts.py`` turns the rules that SQL can express into Grafana alert rules.
Both read the file through :func:`load_rules`, so a rule means the same thing to both.

A rule computes one *signal* over a sliding *window* of a deployment's observations:

``window_mean``
    mean of ``statistic`` over the window; fires when outside ``threshold.band``.
``js_distance``
    Jensen–Shannon distance (base 2, in [0, 1]) between the window's histogram of
    ``statistic`` and the training reference's histogram (``reference.json`` of the
    model's training snapshot: ``stats.<name>.histogram`` for image statistics,
    ``label_histogram`` for ``sensor_mm``/``prediction_mm``), on the reference's bin
    edges plus one underflow and one overflow bin (the reference has none there);
    fires when above ``threshold.max``.
``out_of_range_share``
    share of the window's ``statistic`` values (``sensor_mm`` or ``prediction_mm``)
    outside the trained label range ``[label_min_mm - tolerance_mm,
    label_max_mm + tolerance_mm]``; fires when above ``threshold.max``.
``mae_ratio``
    realized mean absolute error of the window's labelled observations divided by the
    model's ``holdout_mae_mm``; fires when above ``threshold.max``.
``cusum``
    sequential change detection: a CUSUM (Page's cumulative sum) over the window's
    observations in capture order, restarted at the window's start, whose current value
    is compared with ``threshold.max`` (the decision interval *h*). Per observation the
    sum grows by ``x - allowance`` and never drops below 0, where ``x`` is

    - an image statistic: ``|value - mean| / std`` of the training reference, against the
      world closest to that frame, so ``allowance`` is in reference standard deviations;
    - ``sensor_mm`` / ``prediction_mm``: 1 outside the trained label range
      ``± tolerance_mm``, else 0 (``allowance``: the share of such values tolerated);
    - no statistic (concept): ``|error| / holdout_mae_mm``, so ``allowance`` is in
      multiples of the model's holdout MAE.

    A change of the mean by more than ``allowance`` is detected about
    ``h / (shift - allowance)`` observations after it began; while the world is the
    trained one the sum keeps returning to 0.

Every rule needs ``min_samples`` observations in the window (labelled ones for
``mae_ratio`` and for ``sensor_mm``) before it is evaluated at all; it fires only
after its condition has held for ``pending`` and, once fired for a deployment, does
not fire again for it within ``cooldown`` of the event's resolution, while the same
model version serves (a newer version is judged afresh).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from edgeloop.features.statistics import STAT_NAMES
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

RULES_FILE = "rules.yaml"
FORMAT_VERSION = 1
LABEL_STATISTICS: tuple[str, ...] = ("sensor_mm", "prediction_mm")
"""Statistics compared with the training labels (label shift)."""
Kind = Literal["covariate", "label", "concept"]
Signal = Literal["window_mean", "js_distance", "out_of_range_share", "mae_ratio", "cusum"]

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class RulesError(ValueError):
    """The rules file is unreadable or a rule is invalid; the message names rule and field."""


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"5m"``, ``"1h30m"`` (or a timedelta) as a positive timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like 30s, 5m or 1h30m, got {value!r}")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest ``1h30m``-style text of ``value`` (Grafana's ``for`` syntax)."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    return text or "0s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]


class Threshold(BaseModel):
    """When a signal is drift: outside ``band`` [lo, hi], or above ``max``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    band: tuple[float, float] | None = Field(default=None, description="[lo, hi]: fire outside")
    max: float | None = Field(default=None, description="fire above this value")
    follow_reference: bool = Field(
        default=False, description="band only: move the band by (reference mean - band centre) "
        "for a model whose training reference lies outside the band, so a model retrained on a "
        "new world is judged against that world")

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if (self.band is None) == (self.max is None):
            raise ValueError("give exactly one of band: [lo, hi] or max: <value>")
        if self.band is not None and not self.band[0] < self.band[1]:
            raise ValueError(f"band: lo must be below hi, got {list(self.band)}")
        if self.follow_reference and self.band is None:
            raise ValueError("follow_reference applies to a band only")
        return self

    def effective_band(self, reference_mean: float | None) -> tuple[float, float]:
        """The band to apply, given the model's training reference mean of the statistic."""
        if self.band is None:
            raise ValueError("this threshold has no band")
        lo, hi = self.band
        if not self.follow_reference or reference_mean is None or lo <= reference_mean <= hi:
            return lo, hi
        shift = reference_mean - (lo + hi) / 2
        return lo + shift, hi + shift

    def exceeded(self, value: float, reference_mean: float | None = None) -> bool:
        """Whether ``value`` is drift under this threshold."""
        if self.max is not None:
            return value > self.max
        lo, hi = self.effective_band(reference_mean)
        return not lo <= value <= hi


class Rule(BaseModel):
    """One drift rule; see the module docstring for what each signal computes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="unique id: event rule, "
                      "Grafana alert title, sweep trigger")
    kind: Kind
    signal: Signal
    statistic: str | None = Field(default=None, description="observation column the signal "
                                  "reads; none for mae_ratio")
    window: Duration
    min_samples: int = Field(ge=1)
    threshold: Threshold
    pending: Duration = Field(description="how long the condition must hold before firing")
    cooldown: Duration = Field(description="quiet time after an event before it fires again")
    tolerance_mm: float = Field(default=0.0, ge=0, description="out_of_range_share and label "
                                "cusum: margin around the trained label range")
    allowance: float = Field(default=0.0, ge=0, description="cusum only: the per-observation "
                             "allowance k (see the signal's definition for its unit)")
    description: str = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        self._check_statistic()
        expected = self._expected_kind()
        if self.kind != expected:
            raise ValueError(f"kind: a {self.signal} rule on {self.statistic or 'errors'} is "
                             f"{expected}, not {self.kind}")
        if self.signal == "window_mean":
            if self.threshold.band is None:
                raise ValueError("threshold: window_mean needs band: [lo, hi]")
        elif self.threshold.max is None:
            raise ValueError(f"threshold: {self.signal} needs max: <value>")
        elif self.signal in ("js_distance", "out_of_range_share") \
                and not 0 < self.threshold.max <= 1:
            raise ValueError(f"threshold: max of {self.signal} must be in (0, 1]")
        elif self.signal == "mae_ratio" and not self.threshold.max > 1:
            raise ValueError("threshold: max of mae_ratio must be above 1 (the holdout MAE)")
        if self.tolerance_mm and not (self.signal == "out_of_range_share" or (
                self.signal == "cusum" and self.statistic in LABEL_STATISTICS)):
            raise ValueError("tolerance_mm: applies to out_of_range_share and label cusum only")
        if self.signal == "cusum" and not self.allowance > 0:
            raise ValueError("allowance: a cusum rule needs allowance > 0")
        if self.allowance and self.signal != "cusum":
            raise ValueError("allowance: applies to cusum only")
        return self

    def _check_statistic(self) -> None:
        allowed = {"window_mean": STAT_NAMES + LABEL_STATISTICS,
                   "js_distance": STAT_NAMES + LABEL_STATISTICS,
                   "out_of_range_share": LABEL_STATISTICS, "mae_ratio": (),
                   "cusum": STAT_NAMES + LABEL_STATISTICS}[self.signal]
        if self.signal == "cusum" and self.statistic is None:
            return  # a cusum without a statistic watches the labelled error
        if not allowed and self.statistic is not None:
            raise ValueError(f"statistic: {self.signal} takes no statistic")
        if allowed and self.statistic not in allowed:
            raise ValueError(f"statistic: {self.signal} needs one of {', '.join(allowed)}, "
                             f"got {self.statistic!r}")

    def _expected_kind(self) -> str:
        # The kind follows from what is measured: labels and predictions are label
        # shift, image statistics covariate shift, errors concept drift.
        if self.signal == "mae_ratio" or (self.signal == "cusum" and self.statistic is None):
            return "concept"
        return "label" if self.statistic in LABEL_STATISTICS else "covariate"

    @property
    def needs_labels(self) -> bool:
        """Whether only labelled observations count towards ``min_samples``."""
        return self.kind == "concept" or self.statistic == "sensor_mm"


class RuleSet(BaseModel):
    """The whole rules file: format version, evaluation interval and the rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    interval: Duration = Field(description="how often the monitor evaluates every rule")
    rules: tuple[Rule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> RuleSet:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule {rule.name!r} is defined twice")
            seen.add(rule.name)
        return self

    def __iter__(self) -> Iterator[Rule]:  # type: ignore[override]
        return iter(self.rules)

    def get(self, name: str) -> Rule:
        """The rule called ``name``; ``KeyError`` names the known rules otherwise."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(f"no drift rule {name!r}; known: {', '.join(r.name for r in self.rules)}")


def default_rules_path() -> Path:
    """The rules file shipped with the features service."""
    return Path(str(resources.files("edgeloop.features.drift").joinpath(RULES_FILE)))


_FIELD_PREFIX = re.compile(r"^([a-z_][a-z_.]*): (.*)$", re.DOTALL)


def _describe(data: Any, loc: tuple[int | str, ...], message: str) -> str:
    """One problem as ``rule 'name' field threshold: message``.

    Cross-field checks run on the whole rule and start their message with the field
    they blame (``"threshold: ..."``); that field joins the location.
    """
    match = _FIELD_PREFIX.match(message)
    if match and match.group(1) in Rule.model_fields:
        loc, message = (*loc, match.group(1)), match.group(2)
    return f"{_where(data, loc)}: {message}"


def _where(data: Any, loc: tuple[int | str, ...]) -> str:
    """``rule 'name' field threshold.max`` for a validation error location."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules") if isinstance(data, dict) else None
        entry = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"rule {name!r}" if name else f"rule #{loc[1] + 1}"
        field = ".".join(str(p) for p in loc[2:] if not str(p).startswith("function-"))
        return f"{label} field {field}" if field else label
    return "field " + ".".join(str(p) for p in loc) if loc else "file"


def parse_rules(data: Any, source: str = "<rules>") -> RuleSet:
    """Validate parsed YAML; :class:`RulesError` names the rule and field of each problem."""
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            problems.append(_describe(data, tuple(error["loc"]), message))
        raise RulesError(f"{source}: " + "; ".join(problems)) from None


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and validate the rules file (default: the one shipped with the service)."""
    path = Path(path) if path is not None else default_rules_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: cannot read the drift rules: {exc}") from exc
    return parse_rules(data, str(path))
