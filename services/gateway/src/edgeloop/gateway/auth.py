"""Device authentication through the registry, with a short-lived cache.

The registry's ``AuthenticateDevice`` answer says how long it may be cached
(``cache_ttl_seconds``). The cache is keyed by device and a SHA-256 of the token (the
token itself is never kept), and a device's entries are dropped as soon as
``WatchDeployments`` reports it revoked or re-keyed; live streams notice through
:meth:`DeviceAuthenticator.is_current` and re-authenticate.

A live stream renews its grant in the background once it is due
(:meth:`DeviceAuthenticator.due_for_renewal`, at a random point between 60 and 85 % of the
TTL), so its frames never wait for the registry while the grant still holds, and a fleet
that connected together does not ask the registry all at once 30 s later.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.platform import DEFAULT_DEADLINE_S, bearer
from edgeloop.platform.errors import Unauthenticated, Unavailable
from grpc import aio

log = logging.getLogger(__name__)

MAX_CACHED_GRANTS = 10_000
"""Above this many cached grants, expired ones are swept out."""
RENEWAL_WINDOW = (0.60, 0.85)
"""Where in its TTL a live stream's grant is renewed in the background (a random point, so
devices that connected together renew at different times)."""
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


@dataclass(frozen=True)
class Grant:
    """A device the registry vouched for, until ``expires_at`` (monotonic seconds)."""

    device_id: str
    deployment: str
    expires_at: float
    generation: int
    renew_at: float = float("inf")
    """When a live stream should renew it in the background (monotonic seconds)."""


def _key(device_id: str, token: str) -> tuple[str, str]:
    return device_id, hashlib.sha256(token.encode()).hexdigest()


def parse_bearer(metadata: dict[str, str]) -> str:
    """The token of an ``authorization: Bearer <token>`` header; Unauthenticated if absent."""
    scheme, _, token = metadata.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("metadata authorization: expected 'Bearer <device token>'")
    return token.strip()


class DeviceAuthenticator:
    """Checks device tokens against the registry and caches the answers briefly."""

    def __init__(self, channel: aio.Channel, registry_token: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stub = reg_grpc.RegistryServiceStub(channel)
        self.metadata = bearer(registry_token)
        self.clock = clock
        self._cache: dict[tuple[str, str], Grant] = {}
        self._generation: dict[str, int] = {}
        self.registry_calls = 0
        """AuthenticateDevice calls made (cache misses), for logs and tests."""

    async def authenticate(self, device_id: str, token: str) -> Grant:
        """The grant for ``device_id`` with ``token``; Unauthenticated if the registry refuses."""
        cached = self._cache.get(_key(device_id, token))
        if cached is not None and self.is_current(cached):
            return cached
        return await self.renew(device_id, token)

    async def renew(self, device_id: str, token: str) -> Grant:
        """A fresh grant from the registry, cached; Unauthenticated if it refuses."""
        key = _key(device_id, token)
        generation = self._generation.get(device_id, 0)
        reply = await self._ask_registry(device_id, token)
        now, ttl = self.clock(), reply.cache_ttl_seconds
        grant = Grant(device_id=device_id, deployment=reply.device.deployment,
                      expires_at=now + ttl, generation=generation,
                      renew_at=now + ttl * random.uniform(*RENEWAL_WINDOW))
        if self._generation.get(device_id, 0) == generation:
            self._cache[key] = grant  # not revoked while we asked
            if len(self._cache) > MAX_CACHED_GRANTS:
                self._sweep()
        return grant

    def _sweep(self) -> None:
        # Rotated tokens and departed devices leave entries behind; drop the expired ones.
        now = self.clock()
        for key in [k for k, g in self._cache.items() if g.expires_at <= now]:
            del self._cache[key]

    async def _ask_registry(self, device_id: str, token: str) -> reg_pb2.AuthenticateDeviceResponse:
        self.registry_calls += 1
        request = reg_pb2.AuthenticateDeviceRequest(device_id=device_id, token=token)
        try:
            return await self.stub.AuthenticateDevice(request, timeout=DEFAULT_DEADLINE_S,
                                                      metadata=self.metadata)
        except aio.AioRpcError as exc:
            if exc.code() in _REFUSED:
                log.info("device refused by the registry", extra={
                    "device": device_id, "code": exc.code().name, "detail": exc.details()})
                raise Unauthenticated(f"device {device_id!r}: token refused") from exc
            raise Unavailable(f"cannot authenticate device {device_id!r}: registry "
                              f"{exc.code().name.lower()}: {exc.details()}") from exc

    def is_current(self, grant: Grant) -> bool:
        """Whether ``grant`` is neither expired nor from before a revocation of its device."""
        return (grant.expires_at > self.clock()
                and grant.generation == self._generation.get(grant.device_id, 0))

    def due_for_renewal(self, grant: Grant) -> bool:
        """Whether a live stream should renew ``grant`` in the background now."""
        return self.clock() >= grant.renew_at

    def generation(self, device_id: str) -> int:
        """How many times ``device_id`` was revoked or re-keyed since start."""
        return self._generation.get(device_id, 0)

    def revoke(self, device_ids: list[str]) -> None:
        """Forget cached grants of ``device_ids`` (revoked or re-keyed in the registry)."""
        gone = set(device_ids)
        for device_id in gone:
            self._generation[device_id] = self._generation.get(device_id, 0) + 1
        for key in [k for k in self._cache if k[0] in gone]:
            del self._cache[key]
        if gone:
            log.info("dropped cached credentials", extra={"devices": sorted(gone)})
