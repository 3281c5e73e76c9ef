"""gRPC client channels with retries on UNAVAILABLE and a default deadline."""

from __future__ import annotations

import asyncio
import json

import grpc
from edgeloop.platform.tls import ClientTLS
from grpc import aio

DEFAULT_DEADLINE_S = 10.0
"""Deadline for unary calls between services, in seconds; streams set their own."""

_RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RECONNECT_BACKOFF_MAX_MS = 10_000
KEEPALIVE_TIME_MS = 30_000
"""A client pings an open connection this often (long streams: WatchDeployments, Stream)."""


def server_keepalive_options() -> list[tuple[str, object]]:
    """Server options that accept the clients' keepalive pings (:data:`KEEPALIVE_TIME_MS`).

    gRPC servers count a ping received less than 5 minutes after the previous one, with no
    data sent in between, as a strike, and answer the third with GOAWAY ``too_many_pings``:
    a gateway's idle WatchDeployments stream was dropped that way (and gRPC's C++ wrote its
    complaint into the gateway's log). The server accepts pings at a third of that period.
    """
    return [("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 3)]


def channel_options(retries: bool = True) -> list[tuple[str, object]]:
    """Channel options: message size limits, keepalive and (optionally) the retry policy."""
    options: list[tuple[str, object]] = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        # gRPC's default reconnect backoff grows to 120 s: a service restarted after a long
        # outage would then wait up to two minutes for its clients to come back.
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
        ("grpc.enable_retries", 1 if retries else 0),
    ]
    if retries:
        config = {"methodConfig": [{"name": [{}], "retryPolicy": _RETRY_POLICY}]}
        options.append(("grpc.service_config", json.dumps(config)))
    return options


def open_channel(address: str, *, retries: bool = True, tls: ClientTLS | None = None,
                 options: list[tuple[str, object]] | None = None) -> aio.Channel:
    """An asyncio channel to ``address`` (host:port) that retries UNAVAILABLE with backoff.

    With ``tls`` the channel speaks TLS and verifies the server against ``tls.ca``; without,
    plaintext. ``options`` replaces :func:`channel_options` when given.
    """
    options = channel_options(retries) if options is None else options
    if tls is None:
        return aio.insecure_channel(address, options=options)
    return aio.secure_channel(address, tls.grpc_credentials(), options=options)


def open_blocking_channel(address: str, *, tls: ClientTLS | None = None) -> grpc.Channel:
    """A synchronous channel (CLIs, probes): TLS with ``tls``, else plaintext."""
    options = channel_options(retries=False)
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, tls.grpc_credentials(), options=options)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token`` as a bearer credential."""
    return (("authorization", f"Bearer {token}"),)


def cancelled_from_outside() -> bool:
    """Whether the current task was asked to stop, as opposed to handed the CancelledError
    grpc.aio raises when it cancels a call itself (a request's write broke under it).

    The second is a failed call like any other and is retried; the first must end the task.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0
