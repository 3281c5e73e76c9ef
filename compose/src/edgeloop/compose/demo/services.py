"""The demo's clients of the four services, with errors that name the failing part.

The demo talks to the stack only through the gRPC contracts. A call that fails because a
service is down or broken raises :class:`ServiceDown` naming the service, its address and
its log file, so the person running the demo knows where to look.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc
from edgeloop.contracts.trainer.v1 import trainer_service_pb2_grpc
from edgeloop.platform import bearer, open_channel
from edgeloop.platform.tls import ClientTLS, explain_unavailable
from grpc import aio

log = logging.getLogger(__name__)
T = TypeVar("T")
_DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
         grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and where to look."""


class ServiceDown(DemoError):
    """A service did not answer or failed a call."""


@dataclass(frozen=True)
class Endpoint:
    """Where one service listens and where it logs."""

    name: str
    address: str
    log: str


@dataclass
class Services:
    """Channels and stubs to the stack, plus the credentials the demo uses."""

    endpoints: dict[str, Endpoint]
    admin_token: str
    tls: ClientTLS | None = None
    """The stack's client TLS (its CA and client certificate); None when it is plaintext."""
    channels: dict[str, aio.Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("registry", "features", "trainer"):
            self.channels[name] = open_channel(self.endpoints[name].address, tls=self.tls)
        self.registry = registry_service_pb2_grpc.RegistryServiceStub(self.channels["registry"])
        self.features = feature_store_service_pb2_grpc.FeatureStoreServiceStub(
            self.channels["features"])
        self.trainer = trainer_service_pb2_grpc.TrainerServiceStub(self.channels["trainer"])

    @property
    def gateway_addr(self) -> str:
        return self.endpoints["gateway"].address

    @property
    def admin(self) -> tuple[tuple[str, str], ...]:
        """Call metadata with the registry admin token."""
        return bearer(self.admin_token)

    async def call(self, service: str, what: str, make_call: Callable[[], Awaitable[T]]) -> T:
        """Await ``make_call()``; a failure becomes :class:`ServiceDown` or :class:`DemoError`."""
        try:
            return await make_call()
        except aio.AioRpcError as exc:
            raise self.failure(service, what, exc) from exc

    def failure(self, service: str, what: str, exc: aio.AioRpcError) -> DemoError:
        """The error to raise for a failed call ``what`` to ``service``."""
        endpoint = self.endpoints[service]
        detail = f"{exc.code().name}: {exc.details()}"
        log.warning("call failed", extra={"service": service, "call": what, "status": detail})
        mismatch = explain_unavailable(endpoint.address, self.tls) \
            if exc.code() == grpc.StatusCode.UNAVAILABLE else ""
        if mismatch:
            return ServiceDown(f"{service} failed {what}: {mismatch}")
        if exc.code() in _DOWN:
            return ServiceDown(f"{service} at {endpoint.address} failed {what} ({detail}); "
                               f"is it running? see its log {endpoint.log}")
        return DemoError(f"{service} refused {what}: {detail} (log: {endpoint.log})")

    async def close(self) -> None:
        """Close every channel."""
        for channel in self.channels.values():
            await channel.close()


def endpoints_from_rows(rows: list, state_dir: Path) -> dict[str, Endpoint]:
    """Endpoints from `edgeloop up`'s status rows (name, address, detail = log path)."""
    found = {row.name: Endpoint(row.name, row.address, row.detail or
                                str(state_dir / "logs" / f"{row.name}.log")) for row in rows}
    missing = {"registry", "features", "trainer", "gateway"} - set(found)
    if missing:
        raise DemoError(f"the stack in {state_dir} has no {', '.join(sorted(missing))}")
    return found
