"""Configuration from ``EDGELOOP_*`` environment variables, validated at start-up.

Every service declares a :class:`ServiceSettings` subclass; each field is one
variable, ``EDGELOOP_<FIELD NAME IN CAPITALS>``, documented by its ``description``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TypeVar

from edgeloop.platform.errors import ConfigError
from edgeloop.platform.tls import ClientTLS, ServerTLS
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
    max_request_bytes: int = Field(default=64 * 1024 * 1024, gt=0, le=1024 * 1024 * 1024,
                                   description="largest request message the gRPC server takes; "
                                   "a larger one is refused with RESOURCE_EXHAUSTED")
    reuse_port: bool = Field(default=False, description="let several processes of this "
                             "service listen on the same EDGELOOP_LISTEN_ADDR (SO_REUSEPORT: the "
                             "kernel spreads new connections over them); off, a second process "
                             "on a taken port fails at start")
    shutdown_grace_s: float = Field(default=10.0, gt=0, le=300,
                                    description="seconds in-flight calls get to finish on SIGTERM")
    tls_cert: str = Field(default="", description="PEM certificate (chain) this service's servers "
                          "present; with EDGELOOP_TLS_KEY the gRPC port (and the trainer's "
                          "webhook) speak only TLS; empty: plaintext")
    tls_key: str = Field(default="", description="PEM private key of EDGELOOP_TLS_CERT")
    tls_client_ca: str = Field(default="", description="PEM CA bundle; set, clients must present "
                               "a certificate it signed (mutual TLS, e.g. devices at the gateway)")
    tls_ca: str = Field(default="", description="PEM CA bundle that verifies the servers this "
                        "service calls; set, its channels use TLS; empty: plaintext")
    tls_client_cert: str = Field(default="", description="PEM certificate this service presents "
                                 "to servers that require client certificates (needs "
                                 "EDGELOOP_TLS_CA)")
    tls_client_key: str = Field(default="", description="PEM private key of "
                                "EDGELOOP_TLS_CLIENT_CERT")

    def server_tls(self) -> ServerTLS | None:
        """The server's TLS material, or None for plaintext; ConfigError names a bad variable."""
        return ServerTLS.from_values(self.tls_cert, self.tls_key, self.tls_client_ca)

    def client_tls(self) -> ClientTLS | None:
        """TLS for the channels this service opens, or None for plaintext."""
        return ClientTLS.from_values(self.tls_ca, self.tls_client_cert, self.tls_client_key)


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


def env_help(cls: type[BaseSettings]) -> str:
    """Every variable ``cls`` reads, its default and what it does: a service's ``--help``."""
    lines = []
    for field, info in cls.model_fields.items():
        default = "required" if info.is_required() else f"default {info.get_default()!r}"
        lines.append(f"  {env_name(cls, field)}  ({default})")
        if info.description:
            lines.append(f"      {info.description}")
    return "\n".join(lines)


def answer_arguments(cls: type[BaseSettings], argv: Sequence[str] | None = None) -> int | None:
    """A service's command line: none is its normal start (``None``: go on); ``--help`` or
    ``-h`` prints its variables (exit code 0); anything else is refused with them (2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return None
    help_asked = set(args) <= {"-h", "--help"}
    stream = sys.stdout if help_asked else sys.stderr
    stream.write(f"usage: python -m {cls.__module__.rsplit('.', 1)[0]}\n"
                 "A service configured by environment variables only "
                 "(its README says more):\n" + env_help(cls) + "\n")
    return 0 if help_asked else 2
