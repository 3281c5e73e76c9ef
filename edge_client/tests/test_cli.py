"""The edgeloop-edge CLI: render and drive (simulator) against the in-test gateway."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

from click.testing import CliRunner
from edgeloop.edge_client.cli import main
from edgeloop.edge_client.scene.render import decode_jpeg


def test_render_writes_frames_and_labels(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["render", "--scenario", "red", "--out", str(tmp_path),
                                       "-n", "6", "--png", "--seed", "2"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert len(rows) == 6 and all(r["scenario"] == "red" for r in rows)
    assert decode_jpeg((tmp_path / rows[0]["file"]).read_bytes()).shape == (240, 320, 3)
    assert (tmp_path / "frame_00000.png").exists()
    assert float(rows[0]["true_mm"]) > float(rows[-1]["true_mm"])


def test_bad_scenario_flags_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["render", "--scenario", "purple", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown scenario 'purple'" in result.output
    result = runner.invoke(main, ["render", "--change-at", "10", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--change-to" in result.output


def test_custom_floor_from_flags(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["render", "--floor-rgb", "#2040c0", "--max-yaw", "20",
                                       "--out", str(tmp_path), "-n", "2"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert rows[0]["scenario"] == "beige+custom"
    floor = decode_jpeg((tmp_path / "frame_00000.jpg").read_bytes())[-30:].reshape(-1, 3).mean(0)
    assert floor[2] > floor[0] + 40


async def test_drive_prints_per_run_and_final_summaries(gateway, tmp_path: Path) -> None:
    args = ["drive", "--scenario", "green", "--runs", "2", "--fast", "--gateway", gateway.address,
            "--device", gateway.device, "--token", gateway.token,
            "--buffer", str(tmp_path / "b.db")]
    # The CLI runs its own event loop, so run it off this test's loop.
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("run   1 [green]") and lines[1].startswith("run   2 [green]")
    assert "MAE |pred-sensor| 10.0 mm" in lines[2] and "RTT p50/p99" in lines[2]
    assert "reconnects 0" in lines[3]


async def test_drive_with_a_bad_token_fails_clearly(gateway, tmp_path: Path) -> None:
    args = ["drive", "--fast", "--gateway", gateway.address, "--device", gateway.device,
            "--token", "nope", "--buffer", str(tmp_path / "b.db")]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 1
    assert "UNAUTHENTICATED" in result.output


def test_a_clock_offset_is_refused_where_it_means_nothing(tmp_path: Path) -> None:
    base = ["drive", "--device", "d", "--token", "t", "--clock-offset", "-60",
            "--buffer", str(tmp_path / "b.db")]
    for extra in (["--fast"], ["--hardware", "opencv"]):
        result = CliRunner().invoke(main, [*base, *extra])
        assert result.exit_code == 2 and "--clock-offset" in result.output, result.output


async def test_drive_asks_for_quantized_twins_only_when_told(gateway, tmp_path: Path) -> None:
    base = ["drive", "--fast", "--gateway", gateway.address, "--device", gateway.device,
            "--token", gateway.token, "--inference", "device",
            "--model-dir", str(tmp_path / "models")]
    result = await asyncio.to_thread(CliRunner().invoke, main, [
        *base, "--quantized-model", "--buffer", str(tmp_path / "a.db")])
    assert result.exit_code == 0, result.output
    assert "quantized twins when offered" in result.output
    result = await asyncio.to_thread(CliRunner().invoke, main, [
        *base, "--buffer", str(tmp_path / "b.db")])
    assert result.exit_code == 0, result.output
    asked, plain = (set(hello.capabilities) for hello in gateway.state.hellos)
    assert {"device_inference", "quantized_model"} <= asked
    assert "device_inference" in plain and "quantized_model" not in plain


async def test_drive_says_when_frames_were_answered_without_a_model(gateway,
                                                                   tmp_path: Path) -> None:
    gateway.state.without_model = True  # a device the registry knows but no deployment names
    args = ["drive", "--runs", "1", "--fast", "--gateway", gateway.address,
            "--device", gateway.device, "--token", gateway.token,
            "--buffer", str(tmp_path / "b.db")]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    session = next(line for line in result.output.splitlines() if line.startswith("session "))
    frames = int(session.split("frames ")[1].split()[0])
    assert frames > 0
    assert "predictions 0 " in session and "MAE |pred-sensor| n/a" in session
    assert f"without a model {frames}" in session
    assert f"{frames} frames answered without a model" in result.output
    assert "edgeloop deployments list" in result.output


def test_help_answers_to_h_like_the_edgeloop_command() -> None:
    for args in (["-h"], ["drive", "-h"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and result.output.startswith("Usage: "), result.output
