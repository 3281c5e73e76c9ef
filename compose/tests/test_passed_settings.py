"""A service's own settings through `edgeloop up` (EDGELOOP_<PART>__<SETTING>), as the
environment the topology gives each part (no process is started here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from edgeloop.compose.stack.topology import Topology

SECRETS = {"admin_token": "a" * 24, "read_token": "r" * 24, "webhook_secret": "w" * 24,
           "trainer_token": "t" * 24}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("EDGELOOP_"):
            monkeypatch.delenv(name)


def test_a_passed_setting_reaches_its_part_only_and_its_settings_read_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.trainer.settings import Settings as TrainerSettings

    monkeypatch.setenv("EDGELOOP_TRAINER__CARRIED_TRAIN_FRAMES", "400")
    monkeypatch.setenv("EDGELOOP_FEATURES__DRIFT_RETRAIN_CONSOLIDATE_FACTOR", "0")
    monkeypatch.setenv("EDGELOOP_GATEWAY_PROCESSES", "2")
    monkeypatch.setenv("EDGELOOP_GATEWAY__BATCH_MAX_SIZE", "8")
    topology = Topology.from_env(tmp_path)
    trainer = topology.service_env("trainer", SECRETS)
    assert trainer["EDGELOOP_CARRIED_TRAIN_FRAMES"] == "400"
    assert "EDGELOOP_DRIFT_RETRAIN_CONSOLIDATE_FACTOR" not in trainer
    features = topology.service_env("features", SECRETS)
    assert features["EDGELOOP_DRIFT_RETRAIN_CONSOLIDATE_FACTOR"] == "0"
    assert "EDGELOOP_CARRIED_TRAIN_FRAMES" not in features
    assert topology.gateway_env("gateway-2", SECRETS)["EDGELOOP_BATCH_MAX_SIZE"] == "8"
    with monkeypatch.context() as env:
        for name, value in trainer.items():
            env.setenv(name, value)
        assert TrainerSettings().carried_train_frames == 400


@pytest.mark.parametrize(("name", "value", "message"), [
    ("EDGELOOP_ROBOT__SPEED", "1", "'robot' is not a part"),
    ("EDGELOOP_TRAINER__NO_SUCH_SETTING", "1", "has no setting EDGELOOP_NO_SUCH_SETTING"),
    ("EDGELOOP_TRAINER__CARRIED_TRAIN_FRAMES", "-1", "greater than or equal to 0"),
    ("EDGELOOP_TRAINER__CARRIED_TRAIN_FRAMES", "many", "valid integer"),
    ("EDGELOOP_TRAINER__TRAIN_PRECISION", "float16", "float16"),
])
def test_a_bad_passed_setting_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name) as raised:
        Topology.from_env(tmp_path)
    assert message in str(raised.value)


def test_what_the_topology_sets_cannot_be_passed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELOOP_TRAINER__DATABASE_URL", "postgresql://elsewhere/db")
    topology = Topology.from_env(tmp_path)
    with pytest.raises(ValueError, match="EDGELOOP_TRAINER__DATABASE_URL: edgeloop up sets"):
        topology.service_env("trainer", SECRETS)
    assert "EDGELOOP_DATABASE_URL" in topology.service_env("features", SECRETS)


def test_the_consoles_environment_is_its_settings_with_alerts_kept_in_the_state_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.console.settings import Settings as ConsoleSettings

    console = Topology.from_env(tmp_path).console_env(SECRETS)
    with monkeypatch.context() as env:
        for name, value in console.items():
            env.setenv(name, value)
        settings = ConsoleSettings()
    assert Path(settings.alerts_file) == tmp_path / "console" / "alerts.json"
    assert settings.webhook_secret == SECRETS["webhook_secret"]
