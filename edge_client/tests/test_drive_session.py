"""drive_session_async: simulated runs through the real stream client to an in-test gateway."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from edgeloop.edge_client.control.parking import Mode
from edgeloop.edge_client.scene.scenarios import get_scenario, resolve_plan
from edgeloop.edge_client.simulate import drive_session_async


async def test_session_summaries_count_frames_predictions_and_error(gateway,  # noqa: ANN001
                                                                    tmp_path: Path) -> None:
    seen = []
    summary = await drive_session_async(gateway.address, gateway.device, gateway.token, "beige",
                                        runs=2, seed=3, buffer_path=tmp_path / "b.db",
                                        on_run=seen.append)
    assert [r.run for r in seen] == [1, 2] and len(summary.runs) == 2
    total = summary.delivery
    assert total.frames == sum(r.delivery.frames for r in summary.runs)
    assert total.frames == len(gateway.state.received)
    assert total.predictions == total.frames and total.unanswered == 0
    assert total.late == 0, "a healthy gateway gets every frame live"
    # The in-test gateway predicts sensor + 10 mm, so the mean error is exactly 10 mm.
    assert total.mae_mm == pytest.approx(gateway.offset_mm)
    assert total.rtt_p50_ms is not None and total.rtt_p99_ms >= total.rtt_p50_ms
    assert all(r.stop_true_mm < 40 and r.start_mm >= 200 for r in summary.runs)
    sessions = {r.session for r in gateway.state.received}
    assert sessions == {summary.session_id}


async def test_model_mode_steers_by_predictions_and_the_floor_changes(gateway,  # noqa: ANN001
                                                                      tmp_path: Path) -> None:
    plan = resolve_plan("beige").then(5.0, get_scenario("green"))
    summary = await drive_session_async(gateway.address, gateway.device, gateway.token, plan,
                                        runs=2, seed=1, mode=Mode.MODEL,
                                        buffer_path=tmp_path / "b.db")
    assert [r.scenario for r in summary.runs] == ["beige", "green"]
    # The fake model reads 10 mm long, so the sensor's safety stop ends every run.
    assert all("safety stop" in r.stop_reason for r in summary.runs)


async def test_realtime_sessions_are_paced_at_the_capture_rate(gateway, tmp_path: Path) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    started = loop.time()
    summary = await drive_session_async(gateway.address, gateway.device, gateway.token, "beige",
                                        runs=1, seed=2, fps=40.0, realtime=True,
                                        buffer_path=tmp_path / "b.db")
    elapsed = loop.time() - started
    frames = summary.delivery.frames
    assert frames > 10 and elapsed >= (frames - 1) / 40.0
    # Never a catch-up burst; the slack covers render-time jitter of the first/last frame.
    assert 0 < summary.fps <= 42, "captures do not outrun the requested rate"
    assert len(gateway.state.received) == frames
    # stamped by the wall clock: the gateway may judge the robot's clock by them
    assert "simulated_clock" not in gateway.state.hellos[0].capabilities


async def test_a_robots_clock_may_be_set_off_the_true_time(gateway, tmp_path: Path,  # noqa: ANN001
                                                            caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.WARNING, logger="edgeloop.edge_client.stream.clock")
    before = datetime.now(UTC)
    await drive_session_async(gateway.address, gateway.device, gateway.token, "beige", runs=1,
                              seed=2, fps=40.0, realtime=True, buffer_path=tmp_path / "b.db",
                              clock_offset_s=-3600.0)
    after = datetime.now(UTC)
    stamps = [r.captured_at for r in gateway.state.received]
    hour = timedelta(hours=1)
    assert stamps and all(before - hour <= stamp <= after - hour for stamp in stamps)
    (warning,) = caplog.records  # the Welcome told it, once
    assert "clock is 60 min behind the gateway's" in warning.getMessage()


async def test_a_robot_may_stamp_its_frames_on_the_gateways_clock(gateway,  # noqa: ANN001
                                                                  tmp_path: Path) -> None:
    before = datetime.now(UTC)
    await drive_session_async(gateway.address, gateway.device, gateway.token, "beige", runs=1,
                              seed=2, fps=40.0, realtime=True, buffer_path=tmp_path / "b.db",
                              clock_offset_s=-3600.0, clock_from_gateway=True)
    after = datetime.now(UTC)
    stamps = [r.captured_at for r in gateway.state.received]
    # right to half the Welcome's round trip (on loopback, well under a second)
    slack = timedelta(seconds=1)
    assert stamps and all(before - slack <= stamp <= after + slack for stamp in stamps)


async def test_replayed_sessions_carry_simulated_capture_times(gateway, tmp_path: Path) -> None:  # noqa: ANN001
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    summary = await drive_session_async(gateway.address, gateway.device, gateway.token, "beige",
                                        runs=2, seed=2, fps=4.0, start_time=start,
                                        buffer_path=tmp_path / "b.db")
    stamps = [r.captured_at for r in gateway.state.received]
    first_run = summary.runs[0].delivery.frames
    assert stamps[0] == start and stamps[1] - stamps[0] == timedelta(seconds=0.25)
    # The next run starts the 2 s repositioning pause after the stop frame.
    gap = stamps[first_run] - stamps[first_run - 1]
    assert gap == timedelta(seconds=2.0)
    # the robot says so: the gateway does not take them for its clock
    assert "simulated_clock" in gateway.state.hellos[0].capabilities
