"""Shared by the registry command groups (devices, deployments, models, operators): the
stub, the token it sends, and errors.

Registry commands send ``EDGELOOP_OPERATOR_TOKEN`` when it is set — an operator's own
token, so the registry's history records their changes as ``operator:<name>`` — and
otherwise the admin token (``EDGELOOP_ADMIN_TOKEN`` or the local stack's), recorded as
``admin``.

Not a command module (it defines no ``command``); the CLI's discovery skips it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click
import grpc
from edgeloop.compose.endpoints import admin_token, call_error, channel
from edgeloop.contracts.registry.v1 import deployment_pb2, registry_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

DEADLINE_S = 30.0
"""Deadline of each registry call made by the CLI."""
OPERATOR_TOKEN_ENV = "EDGELOOP_OPERATOR_TOKEN"


def registry_token() -> str:
    """The token registry commands send: ``$EDGELOOP_OPERATOR_TOKEN``, else the admin token."""
    return os.environ.get(OPERATOR_TOKEN_ENV, "").strip() or admin_token()


class Registry:
    """A registry stub whose calls carry the caller's token and a deadline."""

    def __init__(self, stub: registry_service_pb2_grpc.RegistryServiceStub, token: str) -> None:
        self._stub = stub
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __getattr__(self, rpc: str):  # noqa: ANN204 - returns the bound RPC
        method = getattr(self._stub, rpc)

        def call(request, timeout: float = DEADLINE_S):  # noqa: ANN001, ANN202
            return method(request, metadata=self._metadata, timeout=timeout)

        return call


@contextmanager
def registry() -> Iterator[Registry]:
    """The registry at ``EDGELOOP_REGISTRY_ADDR``; a gRPC error becomes one clear CLI error."""
    token = registry_token()
    with channel("registry") as opened:
        try:
            yield Registry(registry_service_pb2_grpc.RegistryServiceStub(opened), token)
        except grpc.RpcError as exc:
            raise call_error("registry", exc) from exc


def parse_selector(text: str) -> deployment_pb2.VersionSelector:
    """``3`` (a version), ``@champion`` (an alias) or ``latest``."""
    if text == "latest":
        return deployment_pb2.VersionSelector(latest=True)
    if text.startswith("@") and len(text) > 1:
        return deployment_pb2.VersionSelector(alias=text[1:])
    if text.isdigit():
        return deployment_pb2.VersionSelector(version=text)
    raise click.BadParameter(f"{text!r}: use a version number, @alias or latest")


def show_selector(selector: deployment_pb2.VersionSelector) -> str:
    """The inverse of :func:`parse_selector` ('-' when unset)."""
    kind = selector.WhichOneof("kind")
    if kind == "version":
        return selector.version
    if kind == "alias":
        return f"@{selector.alias}"
    return "latest" if kind == "latest" else "-"


def show_time(value: Timestamp) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC, or '-' when unset."""
    if not value.seconds and not value.nanos:
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
