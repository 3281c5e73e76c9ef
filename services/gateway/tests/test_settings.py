"""Configuration: missing or bad EDGELOOP_* variables stop the gateway naming the variable."""

from __future__ import annotations

import pytest
from edgeloop.gateway.settings import Settings
from edgeloop.platform import load_settings
from edgeloop.platform.errors import ConfigError

REQUIRED = {"EDGELOOP_REGISTRY_ADDR": "127.0.0.1:50051", "EDGELOOP_REGISTRY_TOKEN": "t",
            "EDGELOOP_FEATURES_ADDR": "127.0.0.1:50052", "EDGELOOP_SPOOL_DIR": "spool",
            "EDGELOOP_MODEL_REPOSITORY": "models"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [*REQUIRED, "EDGELOOP_MODEL_HOST", "EDGELOOP_TFSERVING_ADDR",
                 "EDGELOOP_MAX_FRAME_BYTES", "EDGELOOP_LISTEN_ADDR"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_with_the_required_variables(env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        env.setenv(name, value)
    settings = load_settings(Settings)
    assert settings.listen_addr == "127.0.0.1:50050"
    assert settings.max_frame_bytes == 2 * 1024 * 1024
    assert settings.model_host == "embedded" and settings.gateway_id


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_each_missing_required_variable_is_named(env: pytest.MonkeyPatch, missing: str) -> None:
    for name, value in REQUIRED.items():
        if name != missing:
            env.setenv(name, value)
    with pytest.raises(ConfigError, match=missing):
        load_settings(Settings)


def test_tfserving_host_needs_its_address(env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        env.setenv(name, value)
    env.setenv("EDGELOOP_MODEL_HOST", "tfserving")
    with pytest.raises(ConfigError, match="EDGELOOP_TFSERVING_ADDR"):
        load_settings(Settings)
    env.setenv("EDGELOOP_TFSERVING_ADDR", "127.0.0.1:8500")
    assert load_settings(Settings).tfserving_addr == "127.0.0.1:8500"


def test_bad_values_are_named(env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        env.setenv(name, value)
    env.setenv("EDGELOOP_MAX_FRAME_BYTES", "lots")
    env.setenv("EDGELOOP_MODEL_HOST", "gpu")
    with pytest.raises(ConfigError) as failure:
        load_settings(Settings)
    assert "EDGELOOP_MAX_FRAME_BYTES" in str(failure.value)
    assert "EDGELOOP_MODEL_HOST" in str(failure.value)
