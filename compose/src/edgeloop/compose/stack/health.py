"""Probing the parts: gRPC health, HTTP endpoints and PostgreSQL."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
from edgeloop.platform.channels import open_blocking_channel
from edgeloop.platform.tls import ClientTLS
from grpc_health.v1 import health_pb2, health_pb2_grpc


def grpc_status(address: str, timeout_s: float = 2.0, tls: ClientTLS | None = None) -> str:
    """The health status of the server at ``address``: SERVING, NOT_SERVING, or DOWN."""
    try:
        with open_blocking_channel(address, tls=tls) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError:
        return "DOWN"


SERVE_HEALTHZ = "/ray.serve.RayServeAPIService/Healthz"
SERVE_APPLICATIONS = "/ray.serve.RayServeAPIService/ListApplications"


def serve_status(address: str, application: str = "edgeloop-models",
                 timeout_s: float = 2.0) -> str:
    """SERVING when Ray Serve's gRPC proxy at ``address`` is healthy and lists
    ``application``; DOWN otherwise. (Raw calls: the messages are tiny and the proto
    lives in Ray, which this package does not import.)"""
    try:
        with grpc.insecure_channel(address) as channel:
            channel.unary_unary(SERVE_HEALTHZ)(b"", timeout=timeout_s)
            # ListApplicationsResponse: repeated string application_names = 1
            names = channel.unary_unary(SERVE_APPLICATIONS)(b"", timeout=timeout_s)
    except grpc.RpcError:
        return "DOWN"
    return "SERVING" if application.encode() in names else "NOT_SERVING"


def http_status(url: str, timeout_s: float = 2.0) -> str:
    """SERVING when ``url`` answers 2xx, else DOWN."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return "SERVING" if 200 <= response.status < 300 else "DOWN"
    except (urllib.error.URLError, OSError, ValueError):
        return "DOWN"


def postgres_status(dsn: str, timeout_s: float = 2.0) -> str:
    """SERVING when a connection to ``dsn`` succeeds."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
            conn.execute("SELECT 1")
        return "SERVING"
    except psycopg.Error:
        return "DOWN"


def wait_until(probe: Callable[[], str], timeout_s: float, is_dead: Callable[[], bool]) -> str:
    """Poll ``probe`` until SERVING, the process dies, or ``timeout_s`` passes; last status."""
    deadline = time.monotonic() + timeout_s
    status = probe()
    while status != "SERVING" and time.monotonic() < deadline:
        if is_dead():
            return "EXITED"
        time.sleep(0.3)
        status = probe()
    return status
