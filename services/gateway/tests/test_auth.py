"""Device authentication: the registry's TTL bounds the cache, revocation empties it.

The registry is the contract double of conftest.py (AuthenticateDevice only here).
"""

from __future__ import annotations

import pytest
from edgeloop.gateway import auth as auth_module
from edgeloop.gateway.auth import parse_bearer
from edgeloop.platform.errors import Unauthenticated


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_grant_is_cached_for_the_registry_ttl(start_gateway) -> None:
    async with start_gateway() as gw:
        auth, clock = gw.app.auth, Clock()
        auth.clock = clock
        calls = gw.registry.auth_calls
        grant = await auth.authenticate("robot-1", "secret-1")
        assert grant.deployment == "parking" and grant.expires_at == clock.now + 60
        clock.now += 59
        await auth.authenticate("robot-1", "secret-1")
        assert gw.registry.auth_calls == calls + 1
        assert auth.is_current(grant)
        clock.now += 2
        assert not auth.is_current(grant)
        await auth.authenticate("robot-1", "secret-1")
        assert gw.registry.auth_calls == calls + 2


async def test_a_wrong_token_is_never_served_from_the_cache(start_gateway) -> None:
    async with start_gateway() as gw:
        await gw.app.auth.authenticate("robot-1", "secret-1")
        with pytest.raises(Unauthenticated, match="robot-1"):
            await gw.app.auth.authenticate("robot-1", "secret-2")


async def test_revocation_invalidates_grants_and_cache(start_gateway) -> None:
    async with start_gateway() as gw:
        auth = gw.app.auth
        grant = await auth.authenticate("robot-1", "secret-1")
        auth.revoke(["robot-1"])
        assert not auth.is_current(grant)
        calls = gw.registry.auth_calls
        fresh = await auth.authenticate("robot-1", "secret-1")  # asks the registry again
        assert gw.registry.auth_calls == calls + 1 and auth.is_current(fresh)


async def test_expired_grants_are_swept_when_the_cache_grows(start_gateway, monkeypatch) -> None:
    monkeypatch.setattr(auth_module, "MAX_CACHED_GRANTS", 3)
    async with start_gateway() as gw:
        auth, clock = gw.app.auth, Clock()
        auth.clock = clock
        for i in range(3):
            gw.registry.add_device(f"d{i}", f"t{i}", "parking")
            await auth.authenticate(f"d{i}", f"t{i}")
        clock.now += 120  # all three expired
        gw.registry.add_device("d3", "t3", "parking")
        await auth.authenticate("d3", "t3")
        assert len(auth._cache) == 1


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer ", "Bearer"])
def test_malformed_authorization_is_unauthenticated(header: str) -> None:
    with pytest.raises(Unauthenticated, match="authorization"):
        parse_bearer({"authorization": header} if header else {})


def test_bearer_token_is_parsed() -> None:
    assert parse_bearer({"authorization": "Bearer abc.def"}) == "abc.def"
