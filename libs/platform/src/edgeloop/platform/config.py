"""Configuration from ``EDGELOOP_*`` environment variables, validated at start-up.

Every service declares a :class:`ServiceSettings` subclass; each field is one
variable, ``EDGELOOP_<FIELD NAME IN CAPITALS>``, documented by its ``description``.
"""

from __future__ import annotations

from typing import TypeVar

from edgeloop.platform.errors import ConfigError
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "EDGELOOP_"


class ServiceSettings(BaseSettings):
    """Settings every service has."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    listen_addr: str = Field(
        default="127.0.0.1:0",
        description="host:port the gRPC server binds; each service sets its own default port",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$",
                           description="log level: DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field(default="json", pattern=r"^(json|text)$",
                            description="log format on stderr: json (one object a line) or text")
    otlp_endpoint: str = Field(default="", description="OTLP/gRPC endpoint for traces, e.g. "
                               "localhost:4317; empty: OTEL_EXPORTER_OTLP_ENDPOINT if set, "
                               "else no OTLP export")
    trace_file: str = Field(default="", description="file to append finished spans to as JSON "
                            "lines (also when an OTLP endpoint is set); empty disables it")
    trace_file_max_bytes: int = Field(default=50_000_000, ge=0,
                                      description="rotate the span file at this size (0: never)")
    trace_file_max_age_s: float = Field(default=86_400.0, ge=0,
                                        description="rotate the span file once its first span "
                                        "is this many seconds old (0: never)")
    trace_file_backups: int = Field(default=5, ge=0, le=1000,
                                    description="rotated span files kept (name.1.jsonl newest)")
    shutdown_grace_s: float = Field(default=10.0, gt=0, le=300,
                                    description="seconds in-flight calls get to finish on SIGTERM")


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Read ``cls`` from the environment; raise :class:`ConfigError` naming each bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", ENV_PREFIX)
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = f"{prefix}{field}".upper()
            given = error.get("input")
            secret = any(word in field for word in ("token", "secret", "password"))
            shown = "" if isinstance(given, dict) or secret else f" (got {given!r})"
            problems.append(f"{variable}: {error['msg']}{shown}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` of ``cls``."""
    return f"{cls.model_config.get('env_prefix', ENV_PREFIX)}{field}".upper()
