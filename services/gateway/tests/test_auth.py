"""Device authentication: the registry's TTL bounds the cache, revocation empties it.

The registry is the contract double of conftest.py (AuthenticateDevice only here).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from edgeloop.gateway import auth as auth_module
from edgeloop.gateway.auth import parse_bearer
from edgeloop.platform.errors import Unauthenticated
from edgeloop.testing import ManualClock
from grpc import aio


async def test_grant_is_cached_for_the_registry_ttl(start_gateway) -> None:
    async with start_gateway() as gw:
        auth, clock = gw.app.auth, ManualClock(1000.0)
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
        auth, clock = gw.app.auth, ManualClock(1000.0)
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


async def test_a_grant_is_due_for_renewal_at_a_random_point_before_it_expires(
        start_gateway) -> None:
    async with start_gateway() as gw:
        auth, clock = gw.app.auth, ManualClock(1000.0)
        auth.clock = clock
        grants = [await auth.renew("robot-1", "secret-1") for _ in range(20)]
        renewals = [grant.renew_at - clock.now for grant in grants]
        assert all(0.6 * 60 <= r <= 0.85 * 60 for r in renewals)
        assert len(set(renewals)) > 1  # devices that connected together renew apart
        grant = grants[-1]
        clock.now = grant.renew_at - 0.1
        assert not auth.due_for_renewal(grant)
        clock.now = grant.renew_at
        assert auth.due_for_renewal(grant) and auth.is_current(grant)


async def _open(gw, requests) -> aio.StreamStreamCall:  # noqa: ANN001
    call = gw.open("robot-1", "secret-1")
    await call.write(requests.hello("robot-1"))
    assert (await call.read()).HasField("welcome")
    return call


async def test_frames_go_on_while_a_due_grant_is_renewed_in_the_background(
        start_gateway, requests, jpegs) -> None:
    async with start_gateway() as gw:
        auth, clock = gw.app.auth, ManualClock(1000.0)
        auth.clock = clock
        call = await _open(gw, requests)
        calls = gw.registry.auth_calls
        gw.registry.auth_gate = asyncio.Event()  # the registry holds every call from now
        clock.now += 55  # past the renewal point, before the grant expires (TTL 60 s)
        for seq in range(1, 6):
            await call.write(requests.frame(seq, jpegs[seq % 8]))
            assert (await call.read()).prediction.seq == seq  # no frame waits for it
        assert gw.registry.auth_calls == calls + 1  # one renewal, not one per frame
        finished = gw.registry.auth_finished
        gw.registry.auth_gate.set()
        await gw.wait_state(lambda: gw.registry.auth_finished > finished)
        for seq in range(6, 9):
            await call.write(requests.frame(seq, jpegs[seq % 8]))
            assert (await call.read()).prediction.seq == seq
        assert gw.registry.auth_calls == calls + 1  # the renewed grant holds another TTL
        await call.done_writing()


async def test_a_token_refused_at_renewal_ends_the_stream(start_gateway, requests, jpegs) -> None:
    async with start_gateway() as gw:
        auth, clock = gw.app.auth, ManualClock(1000.0)
        auth.clock = clock
        call = await _open(gw, requests)
        gw.registry.add_device("robot-1", "rotated", "parking")  # re-keyed by an operator
        finished = gw.registry.auth_finished
        clock.now += 55
        await call.write(requests.frame(1, jpegs[1]))
        assert (await call.read()).prediction.seq == 1
        # the refusal reaches the stream between two frames: it ends, UNAUTHENTICATED
        with pytest.raises(aio.AioRpcError) as refused:
            async with asyncio.timeout(30):
                for seq in range(2, 10_000):
                    await call.write(requests.frame(seq, jpegs[seq % 8]))
                    assert (await call.read()).prediction.seq == seq
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert gw.registry.auth_finished > finished
