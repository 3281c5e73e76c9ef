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
        PhaseResult(3, "covariate shift", "green", before=ErrorStats.of([20, -30]),
                    after=ErrorStats.of([5, 9]), version_before="2", version_after="3",
                    detection_s=12.0, retrain_s=50.0, errors_before=[20, -30],
                    errors_after=[5, 9], rule="cusum_hue", rule_kind="covariate",
                    onset_to_serving_s=80.0, monitored=True,
                    settled=ErrorStats.of([4, -6]), version_settled="4",
                    settled_trigger="consolidate:ab12",
                    onset_to_settled_s=190.0),
        PhaseResult(5, "closed loop", "red", before=ErrorStats.of([50, 60]),
                    after=ErrorStats.of([7, 9]), version_before="3", version_after="4",
                    detection_s=40.0, retrain_s=200.0, errors_before=[50, 60],
                    errors_after=[7, 9], rule="js_hue", rule_kind="covariate",
                    onset_to_serving_s=250.0, false_alarms=["js_hue at t"], monitored=True),
    ]
    timeline = [TimelinePoint(t, 50.0 if t < 60 else 71.0, 100.0, 95.0, 5.0 if t < 60 else 40.0,
                              "2" if t < 300 else "3") for t in range(0, 400, 5)]
    result.loop = LoopResult(red_at_s=60.0, fired_at_s=100.0, promoted_at_s=300.0,
                             serving_at_s=310.0, rule="js_hue", pre_drift=ErrorStats.of([6, 8]),
                             timeline=timeline, false_alarms=["js_hue at t"], kind="covariate")
    green = LoopResult(red_at_s=45.0, fired_at_s=57.0, promoted_at_s=107.0, serving_at_s=125.0,
                       rule="cusum_hue", kind="covariate", pre_drift=ErrorStats.of([6, 8]),
                       timeline=timeline, phase=3)
    result.loops = [green, result.loop]
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
    recovery = next(t for t in _result().targets()
                    if t.name.startswith("phase 5") and "after retraining" in t.name)
    assert recovery.measured == pytest.approx(8.0 / 7.0) and recovery.met  # vs live beige 7 mm
    # Every monitored phase has its targets: detection 30 s, change -> serving 90 s, 1.2x.
    phase3 = {t.name: t for t in _result().targets() if t.name.startswith("phase 3")}
    detection = next(t for n, t in phase3.items() if "detection delay" in n)
    serving = next(t for n, t in phase3.items() if "-> retrained model serving" in n)
    after = next(t for n, t in phase3.items() if "after retraining" in n)
    assert (detection.measured, detection.met) == (12.0, True)
    assert (serving.measured, serving.met) == (80.0, True)
    assert after.measured == pytest.approx(7.0 / 7.0) and after.met
    settled = next(t for n, t in phase3.items() if "once settled" in n)
    assert settled.measured == pytest.approx(5.0 / 7.0) and settled.met
    assert not [t for t in _result().targets() if t.name.startswith("phase 5")
                and "settled" in t.name], "no settled version measured: no target line"
    red_serving = next(t for t in _result().targets() if t.name.startswith("phase 5")
                       and "-> retrained model serving" in t.name)
    assert red_serving.measured == 250.0 and red_serving.met is False
    assert Target("x", None, 1.0, "s").met is None
    assert Target("x", 2.0, 1.0, "s").met is False


def test_report_round_trips_and_draws_every_plot(tmp_path: Path) -> None:
    path = write_report(_result(), tmp_path)
    text = path.read_text()
    assert "| 2 label shift | beige-distant | 35.0 | 40.0 | 7.0 | 8.0 |" in text
    assert "| manual |" in text, "a hand-retrained phase says so"
    assert ("| 7.0 | 9.0 | 5.0 (3.2 min) | 178 -> 15.5 | cusum_hue (covariate) | 12 s | 80 s "
            "| 50 s | v2 -> v3 -> v4 (consolidate) | 0 |") in text
    assert "| js_hue (covariate) | 40 s | 4.2 min | 3.3 min | v3 -> v4 | 1 |" in text
    assert "world change -> new version serving: 4.2 min" in text
    assert "## Phase 3: covariate shift, monitored" in text
    assert "- settled: version 4 (trigger `consolidate:ab12`) served the new world 3.2 min " \
           "after the change: MAE 5.0 mm" in text
    for name in ("phase1_errors.png", "phase2_errors.png", "phase5_errors.png",
                 "phase3_timeline.png", "phase5_timeline.png"):
        assert (tmp_path / name).stat().st_size > 1000
        assert f"]({name})" in text
    again = DemoResult.load(tmp_path / "result.json")
    assert rows(again) == rows(_result())
    assert again.loop is not None and again.loop.timeline[0] == _result().loop.timeline[0]
    assert [lp.phase for lp in again.loops] == [3, 5] and again.loops[0].rule == "cusum_hue"


def test_history_clock_stays_out_of_the_monitor_windows() -> None:
    now = datetime.now(UTC)
    clock = HistoryClock(now)
    start, end = clock.take(runs=10, fps=4.0)
    assert end < now - timedelta(minutes=15)
    clock.advance(start + timedelta(seconds=100))
    assert clock.cursor > start + timedelta(seconds=100)
    with pytest.raises(DemoError):
        clock.take(runs=10_000, fps=4.0)


def test_monitored_phases_start_from_the_world_the_champion_knows() -> None:
    from edgeloop.compose.demo.config import DemoConfig

    config = DemoConfig.quick()
    assert not config.manual, "every drifted phase goes through the monitor by default"
    assert [config.world_before(n) for n in (2, 3, 4, 5)] == [
        "beige", "beige-distant", "green", "beige"]
    assert [config.scenarios[n] for n in (2, 3, 4, 5)] == [
        "beige-distant", "green", "green-angle", "red"]


def test_before_is_the_version_that_met_the_change() -> None:
    """A retrain during the warm-up replaced the phase's first champion: "before" follows."""
    from edgeloop.compose.demo.records import Record, answering_version

    at = datetime(2026, 12, 2, tzinfo=UTC)

    def record(version: str, prediction: float | None) -> Record:
        return Record(at, at, version, prediction, 100.0, None if prediction is None
                      else prediction - 100.0, 50.0)

    assert answering_version([record("3", 120.0), record("3", 130.0), record("2", 110.0),
                              record("4", None), record("4", None)]) == "3"
    assert answering_version([record("2", None)]) is None
    assert answering_version([]) is None


def _label_shift_loop() -> tuple[DemoResult, LoopResult]:
    """Phase 2 with v1 on 0-200 mm before the change and v2 on 0-400 mm after it.

    Both versions err 2 mm below 200 mm; v2 errs 4 mm from 200 mm and 20 mm from 300 mm on.
    """
    before = [TimelinePoint(float(t), 50.0, None, float(d), 2.0, "1")
              for t, d in enumerate(range(0, 200, 10))]
    after = [TimelinePoint(100.0 + t, 50.0, None, float(d),
                           20.0 if d >= 300 else -4.0 if d >= 200 else 2.0, "2")
             for t, d in enumerate(range(0, 400, 10))]
    loop = LoopResult(red_at_s=50.0, fired_at_s=55.0, promoted_at_s=90.0, serving_at_s=100.0,
                      rule="label_sensor_cusum", kind="label", phase=2,
                      pre_drift=ErrorStats.of([2.0] * len(before)), timeline=before + after)
    phase = PhaseResult(2, "label shift", "beige-distant", version_before="1",
                        version_after="2", monitored=True, onset_to_serving_s=50.0,
                        after=ErrorStats.of(p.error_mm for p in after))
    result = DemoResult("2026-12-05T11:00:00+00:00", "quick", "distance", "parking",
                        phases=[phase], loops=[loop], finished=True)
    return result, loop


def test_distance_bins_and_range_split_errors_by_the_sensor_reading() -> None:
    from edgeloop.compose.demo.distances import by_bin, inside, sensor_range

    frames = [(10.0, 1.0), (49.9, -3.0), (50.0, 6.0), (260.0, -20.0)]
    bins = by_bin(frames)
    assert list(bins) == [0.0, 50.0, 250.0]
    assert (bins[0.0].count, bins[0.0].mae_mm) == (2, 2.0)
    assert bins[250.0].mae_mm == 20.0
    assert sensor_range(frames) == (10.0, 260.0) and sensor_range([]) is None
    assert inside(frames, (10.0, 50.0)).mae_mm == pytest.approx(10.0 / 3)


def test_a_wider_world_is_also_judged_within_the_pre_drift_distances() -> None:
    result, _ = _label_shift_loop()
    targets = {t.name: t for t in result.targets() if t.name.startswith("phase 2 MAE after")}
    overall = targets["phase 2 MAE after retraining / pre-drift MAE"]
    within = targets["phase 2 MAE after retraining / pre-drift MAE, frames within the "
                     "pre-drift distances (0-190 mm)"]
    # overall: 20 frames at 2 mm, 10 at 4 mm, 10 at 20 mm; within 0-190 mm: the 20 at 2 mm
    assert overall.measured == pytest.approx((20 * 2 + 10 * 4 + 10 * 20) / 40 / 2.0)
    assert overall.met is False
    assert within.measured == pytest.approx(1.0) and within.met


def test_a_world_of_the_same_distances_gets_no_second_reading() -> None:
    targets = [t.name for t in _result().targets()]
    assert not [name for name in targets if "pre-drift distances" in name]


def test_report_shows_each_monitored_phase_by_distance(tmp_path: Path) -> None:
    result, _ = _label_shift_loop()
    text = write_report(result, tmp_path).read_text()
    assert "| ToF distance (mm) | pre-drift v1 | after v2 |" in text
    assert "| 100-150 | 2.0 (5) | 2.0 (5) |" in text
    assert "| 300-350 | - | 20.0 (5) |" in text
    again = DemoResult.load(tmp_path / "result.json")
    assert [t.describe() for t in again.targets()] == [t.describe() for t in result.targets()]
