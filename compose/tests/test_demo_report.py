"""`edgeloop demo`'s numbers and report from recorded results (no services needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from edgeloop.compose.demo.drives import HistoryClock
from edgeloop.compose.demo.metrics import ErrorStats, Target
from edgeloop.compose.demo.report import rows, write_report
from edgeloop.compose.demo.results import DemoResult, LoopResult, PhaseResult, TimelinePoint
from edgeloop.compose.demo.services import DemoError


def _result() -> DemoResult:
    result = DemoResult("2026-11-26T12:00:00+00:00", "quick", "distance", "parking")
    result.phases = [
        PhaseResult(1, "beige", "beige", after=ErrorStats.of([5, -7, 9]), version_after="1",
                    retrain_s=100.0, errors_after=[5, -7, 9]),
        PhaseResult(2, "label shift", "beige-distant", before=ErrorStats.of([30, -40]),
                    after=ErrorStats.of([6, 8]), version_before="1", version_after="2",
                    errors_before=[30, -40], errors_after=[6, 8]),
        PhaseResult(5, "closed loop", "red", before=ErrorStats.of([50, 60]),
                    after=ErrorStats.of([8, 10]), version_before="2", version_after="3",
                    detection_s=40.0, retrain_s=200.0, errors_before=[50, 60],
                    errors_after=[8, 10]),
    ]
    timeline = [TimelinePoint(t, 50.0 if t < 60 else 71.0, 100.0, 95.0, 5.0 if t < 60 else 40.0,
                              "2" if t < 300 else "3") for t in range(0, 400, 5)]
    result.loop = LoopResult(red_at_s=60.0, fired_at_s=100.0, promoted_at_s=300.0,
                             serving_at_s=310.0, rule="js_hue", pre_drift=ErrorStats.of([6, 8]),
                             timeline=timeline)
    result.finished = True
    return result


def test_error_stats_use_absolute_errors_and_ignore_nan() -> None:
    stats = ErrorStats.of([3.0, -5.0, float("nan"), 1.0])
    assert (stats.count, stats.mae_mm, stats.max_mm) == (3, 3.0, 5.0)
    assert ErrorStats.of([]).mae_mm is None


def test_targets_compare_against_the_right_baselines() -> None:
    targets = {t.name.split(" (")[0] if "phase 2" in t.name else t.name: t
               for t in _result().targets()}
    drift = next(t for name, t in targets.items() if name.startswith("phase 2"))
    assert drift.measured == pytest.approx(35.0 / 7.0) and drift.met  # vs phase 1's 7 mm
    loop = _result().loop
    assert loop is not None and loop.detection_s == 40.0 and loop.detection_to_serving_s == 210.0
    recovery = next(t for t in _result().targets() if "after retraining" in t.name)
    assert recovery.measured == pytest.approx(9.0 / 7.0) and recovery.met  # vs live beige 7 mm
    assert Target("x", None, 1.0, "s").met is None
    assert Target("x", 2.0, 1.0, "s").met is False


def test_report_round_trips_and_draws_every_plot(tmp_path: Path) -> None:
    path = write_report(_result(), tmp_path)
    text = path.read_text()
    assert "| 2 label shift | beige-distant | 35.0 | 40.0 | 7.0 | 8.0 |" in text
    assert "detection -> new version serving: 3.5 min" in text
    for name in ("phase1_errors.png", "phase2_errors.png", "phase5_errors.png",
                 "phase5_timeline.png"):
        assert (tmp_path / name).stat().st_size > 1000
        assert f"]({name})" in text
    again = DemoResult.load(tmp_path / "result.json")
    assert rows(again) == rows(_result())
    assert again.loop is not None and again.loop.timeline[0] == _result().loop.timeline[0]


def test_history_clock_stays_out_of_the_monitor_windows() -> None:
    now = datetime.now(UTC)
    clock = HistoryClock(now)
    start, end = clock.take(runs=10, fps=4.0)
    assert end < now - timedelta(minutes=15)
    clock.advance(start + timedelta(seconds=100))
    assert clock.cursor > start + timedelta(seconds=100)
    with pytest.raises(DemoError):
        clock.take(runs=10_000, fps=4.0)
