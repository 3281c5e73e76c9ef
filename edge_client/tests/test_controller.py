"""The parking controller and console signals."""

from __future__ import annotations

from edgeloop.edge_client.control.parking import Mode, ParkingController
from edgeloop.edge_client.control.profile import SpeedProfile
from edgeloop.edge_client.control.signals import ConsoleSignals, beep_level

PROFILE = SpeedProfile(v_max_mm_s=60, v_min_mm_s=12, slow_mm=150, stop_mm=30)


def test_speed_profile_slows_near_the_wall() -> None:
    assert PROFILE.speed(300) == 60
    assert 12 < PROFILE.speed(100) < 60
    assert PROFILE.speed(31) < PROFILE.speed(100)
    assert PROFILE.speed(30) == 0


def test_model_mode_steers_by_a_fresh_prediction() -> None:
    controller = ParkingController(PROFILE, Mode.MODEL)
    decision = controller.decide(sensor_mm=200, prediction_mm=100, prediction_age_s=0.1)
    assert decision.source == "model" and decision.speed_mm_s == PROFILE.speed(100)
    stop = controller.decide(sensor_mm=200, prediction_mm=25, prediction_age_s=0.1)
    assert stop.stop and stop.source == "model"


def test_missing_or_late_prediction_falls_back_to_the_sensor() -> None:
    controller = ParkingController(PROFILE, Mode.MODEL, max_prediction_age_s=0.5)
    late = controller.decide(sensor_mm=120, prediction_mm=60, prediction_age_s=0.9)
    missing = controller.decide(sensor_mm=120, prediction_mm=None)
    assert late.source == missing.source == "sensor"
    assert late.speed_mm_s == PROFILE.speed(120) and "late" in late.reason


def test_sensor_safety_stop_overrides_the_model() -> None:
    controller = ParkingController(PROFILE, Mode.MODEL)
    decision = controller.decide(sensor_mm=28, prediction_mm=150, prediction_age_s=0.1)
    assert decision.stop and "safety stop" in decision.reason


def test_no_distance_at_all_waits_without_moving() -> None:
    decision = ParkingController(PROFILE, Mode.SENSOR).decide(sensor_mm=None)
    assert decision.speed_mm_s == 0 and not decision.stop


def test_console_signals_report_cadence_changes_and_stops() -> None:
    lines: list[str] = []
    controller = ParkingController(PROFILE, Mode.SENSOR, signals=ConsoleSignals(lines.append))
    for mm in (200, 190, 120, 60, 25):
        controller.decide(mm)
    assert [beep_level(mm) for mm in (200, 120, 60, 25)] == [0, 1, 2, 3]
    assert len([line for line in lines if line.startswith("buzzer")]) == 4
    assert lines[-1].startswith("STOP")
