"""``edgeloop demo --on-device [--quantized-model]``: robots keep one model store across runs;
the report lines."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from edgeloop.compose.cli import cli
from edgeloop.compose.demo import on_device
from edgeloop.edge_client.inference.device_model import Switch
from edgeloop.edge_client.inference.litert import LiteRTModel
from edgeloop.edge_client.inference.store import ModelIdentity, sha256_of

TINY = Path(__file__).resolve().parents[2] / "edge_client" / "tests" / "data" / "tiny_v1.tflite"


@pytest.fixture(autouse=True)
def fresh_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(on_device, "_store_root", None)
    monkeypatch.setattr(on_device, "_robots", {})
    monkeypatch.setattr(on_device, "_quantized", False)


def test_off_adds_nothing_to_a_drive() -> None:
    assert not on_device.enabled()
    assert on_device.session_kwargs("car-1") == {}
    assert on_device.report_lines() == []


def test_on_gives_each_robot_one_onboard_model_and_reports_its_switches(tmp_path: Path) -> None:
    on_device.enable(tmp_path)
    first = on_device.session_kwargs("car-1")["onboard"]
    assert on_device.session_kwargs("car-1")["onboard"] is first  # same store across runs
    assert first.model.store.root == tmp_path / "demo" / "devices" / "car-1"
    on_device.session_kwargs("car-2")
    assert on_device.report_lines() == ["car-1: no model downloaded",
                                        "car-2: no model downloaded"]
    identity = ModelIdentity("distance", "1", TINY.stat().st_size, sha256_of(TINY))
    target = first.model.store.path(identity)
    target.parent.mkdir(parents=True)
    shutil.copy(TINY, target)
    first.model.model = LiteRTModel(target, "distance", "1", threads=1)
    first.model.switches.append(Switch("1", time.monotonic(), 0.0))
    assert on_device.report_lines()[0] == "car-1: on-device model v1 at 00:00:00.000"


def test_quantized_robots_ask_for_twins_and_the_report_says_which_file_ran(
        tmp_path: Path) -> None:
    on_device.enable(tmp_path, quantized=True)
    onboard = on_device.session_kwargs("car-1")["onboard"]
    assert onboard.quantized  # its Hello lists quantized_model
    onboard.model.switches += [Switch("1", time.monotonic(), 0.0),
                               Switch("1", time.monotonic(), 1.5, quantized=True)]
    assert on_device.report_lines() == [
        "car-1: on-device model v1 at 00:00:00.000, v1 (quantized twin) at 00:00:01.500"]


def test_the_demo_refuses_quantized_twins_without_on_device_inference(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--quick", "--quantized-model",
                                      "--state", str(tmp_path)])
    assert result.exit_code == 2
    assert "--quantized-model is for robots that predict on the device" in result.output
    assert not (tmp_path / "logs").exists()  # refused before anything started
