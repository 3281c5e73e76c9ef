"""Per-run and per-session summaries of a drive: what was sent, answered, and how well."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from edgeloop.edge_client.stream.client import FrameResult
from edgeloop.edge_client.stream.stats import rtt_percentiles


@dataclass(frozen=True)
class DeliverySummary:
    """Counts and quality over a set of frames."""

    frames: int
    labelled: int
    predictions: int
    """Frames answered with a predicted distance."""
    without_model: int
    """Frames answered without one: the device has no deployment, or its deployment no model
    (the gateway records them all the same)."""
    errors: int
    late: int
    dropped: int
    unanswered: int
    mae_mm: float | None
    """Mean |prediction - sensor| over frames with both."""
    rtt_p50_ms: float | None
    rtt_p99_ms: float | None


@dataclass(frozen=True)
class RunSummary:
    """One run: the delivery summary plus where and why the car stopped."""

    run: int
    scenario: str
    start_mm: float
    stop_true_mm: float
    stop_reason: str
    delivery: DeliverySummary


@dataclass(frozen=True)
class SessionSummary:
    """A whole drive session."""

    session_id: str
    runs: list[RunSummary]
    delivery: DeliverySummary
    fps: float
    reconnects: int
    buffered_left: int
    device_switches: list[tuple[str, str]] = field(default_factory=list)
    """On-device inference: (model version, ISO time it started predicting), in order."""


def summarise(seqs: Iterable[int], sensors: dict[int, float | None],
              results: dict[int, FrameResult]) -> DeliverySummary:
    """Summarise the frames ``seqs`` from their sensor readings and results so far."""
    seqs = list(seqs)
    got = [results[s] for s in seqs if s in results]
    answers = [r for r in got if r.prediction is not None]
    predicted = [r for r in answers if r.distance_mm is not None]
    errors = [r.distance_mm - r.sensor_mm for r in predicted if r.sensor_mm is not None]
    p50, p99 = rtt_percentiles([r.rtt_ms for r in got if r.rtt_ms is not None])
    return DeliverySummary(
        frames=len(seqs),
        labelled=sum(1 for s in seqs if sensors.get(s) is not None),
        predictions=len(predicted),
        without_model=len(answers) - len(predicted),
        errors=sum(1 for r in got if r.error is not None),
        late=sum(1 for r in got if r.late),
        dropped=sum(1 for r in got if r.dropped),
        unanswered=len(seqs) - len(got),
        mae_mm=float(np.mean(np.abs(errors))) if errors else None,
        rtt_p50_ms=p50,
        rtt_p99_ms=p99,
    )


def format_delivery(d: DeliverySummary) -> str:
    """One line for people: frames, predictions, MAE, round trips."""
    mae = "n/a" if d.mae_mm is None else f"{d.mae_mm:.1f} mm"
    p50 = "n/a" if d.rtt_p50_ms is None else f"{d.rtt_p50_ms:.1f}"
    p99 = "n/a" if d.rtt_p99_ms is None else f"{d.rtt_p99_ms:.1f}"
    line = (f"frames {d.frames} (labelled {d.labelled})  predictions {d.predictions}  "
            f"errors {d.errors}  MAE |pred-sensor| {mae}  RTT p50/p99 {p50}/{p99} ms")
    extra = [f"{name} {n}" for name, n in (("without a model", d.without_model),
                                           ("late", d.late), ("dropped", d.dropped),
                                           ("unanswered", d.unanswered)) if n]
    return line + ("  " + "  ".join(extra) if extra else "")
