"""Configuration: bad values fail fast with a message naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest
from edgeloop.platform import ConfigError, ServiceSettings, load_settings
from pydantic import Field


class ExampleSettings(ServiceSettings):
    """A service's settings with a required and a bounded variable."""

    database_url: str = Field(description="required")
    batch_max_size: int = Field(default=8, ge=1, le=512, description="bounded")
    admin_token: str = Field(default="x" * 16, min_length=16, description="secret")


def test_valid_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELOOP_DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("EDGELOOP_BATCH_MAX_SIZE", "32")
    settings = load_settings(ExampleSettings)
    assert settings.database_url == "postgresql://db/x"
    assert settings.batch_max_size == 32


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELOOP_DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("EDGELOOP_BATCH_MAX_SIZE", "lots")
    with pytest.raises(ConfigError, match=r"EDGELOOP_BATCH_MAX_SIZE.*'lots'"):
        load_settings(ExampleSettings)


def test_missing_required_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGELOOP_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="EDGELOOP_DATABASE_URL"):
        load_settings(ExampleSettings)


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELOOP_DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("EDGELOOP_ADMIN_TOKEN", "short-secret")
    with pytest.raises(ConfigError) as info:
        load_settings(ExampleSettings)
    assert "EDGELOOP_ADMIN_TOKEN" in str(info.value)
    assert "short-secret" not in str(info.value)


def test_service_exits_at_start_naming_the_bad_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "EDGELOOP_SHUTDOWN_GRACE_S": "-3"}
    result = subprocess.run([sys.executable, "-m", "edgeloop.features"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "EDGELOOP_SHUTDOWN_GRACE_S" in result.stderr
