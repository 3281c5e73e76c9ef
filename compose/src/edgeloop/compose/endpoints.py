"""Where the CLI finds the services and its credentials.

An explicit ``EDGELOOP_<NAME>_ADDR`` / ``EDGELOOP_ADMIN_TOKEN`` wins; otherwise the
values recorded by ``edgeloop up`` in the state folder are used, so commands work
against the local stack without any set-up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

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
    path = state_dir() / "secrets.json"
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
