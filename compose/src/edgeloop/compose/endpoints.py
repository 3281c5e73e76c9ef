"""Where the CLI finds the services and its credentials.

An explicit ``EDGELOOP_<NAME>_ADDR`` / ``EDGELOOP_ADMIN_TOKEN`` / ``EDGELOOP_TLS_CA`` wins;
otherwise the values recorded by ``edgeloop up`` in the state folder are used, so commands
work against the local stack (TLS included) without any set-up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import grpc
from edgeloop.compose.stack.state import SECRETS_FILE
from edgeloop.platform.channels import open_blocking_channel
from edgeloop.platform.errors import ConfigError
from edgeloop.platform.tls import ClientTLS, explain_unavailable

DEFAULT_STATE_DIR = ".edgeloop"
DEFAULT_ADDRS = {
    "gateway": "127.0.0.1:50050",
    "registry": "127.0.0.1:50051",
    "features": "127.0.0.1:50052",
    "trainer": "127.0.0.1:50053",
}


def state_dir() -> Path:
    """The state folder: $EDGELOOP_STATE_DIR or ./.edgeloop."""
    return Path(os.environ.get("EDGELOOP_STATE_DIR", DEFAULT_STATE_DIR)).resolve()


def _stack() -> dict:
    path = state_dir() / "stack.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _secrets() -> dict[str, str]:
    path = state_dir() / SECRETS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def address(service: str) -> str:
    """host:port of ``service`` (gateway, registry, features, trainer)."""
    explicit = os.environ.get(f"EDGELOOP_{service.upper()}_ADDR")
    if explicit:
        return explicit
    part = _stack().get("parts", {}).get(service, {})
    return part.get("address") or DEFAULT_ADDRS[service]


def admin_token() -> str:
    """The registry admin token: $EDGELOOP_ADMIN_TOKEN or the local stack's."""
    token = os.environ.get("EDGELOOP_ADMIN_TOKEN") or _secrets().get("admin_token", "")
    if not token:
        raise click.ClickException("no admin token: set EDGELOOP_ADMIN_TOKEN or run `edgeloop up`")
    return token


def secret(name: str) -> str:
    """Another secret recorded by ``edgeloop up`` (e.g. ``webhook_secret``), or ''."""
    return _secrets().get(name, "")


def client_tls(service: str = "") -> ClientTLS | None:
    """TLS to ``service``: ``EDGELOOP_TLS_CA`` (+ client cert/key), else the local stack's.

    An address given by ``EDGELOOP_<SERVICE>_ADDR`` is another server than the recorded
    stack's, so it gets the stack's TLS only through ``EDGELOOP_TLS_CA``.
    """
    try:
        if os.environ.get("EDGELOOP_TLS_CA"):
            return ClientTLS.from_env()
        if service and os.environ.get(f"EDGELOOP_{service.upper()}_ADDR"):
            return None
        return ClientTLS.from_env(_stack().get("tls", {}))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def channel(service: str) -> grpc.Channel:
    """A blocking channel to ``service`` (TLS when the stack or the environment says so)."""
    return open_blocking_channel(address(service), tls=client_tls(service))


def call_error(service: str, exc: grpc.RpcError) -> click.ClickException:
    """One clear CLI error for a failed call; a TLS mismatch says which variable to set."""
    target = address(service)
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        mismatch = explain_unavailable(target, client_tls(service))
        if mismatch:
            return click.ClickException(f"{service}: {mismatch}")
    return click.ClickException(f"{service} at {target}: {exc.code().name}: {exc.details()}")
