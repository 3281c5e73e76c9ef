"""Operators: tokens of their own, and a history whose actor is the token's identity."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import grpc
import psycopg
import pytest
from edgeloop.contracts.registry.v1 import operator_pb2 as opb
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.platform import bearer

ADMIN_ROLE, READ_ROLE = opb.OPERATOR_ROLE_ADMIN, opb.OPERATOR_ROLE_READ


async def _create(registry, name: str, role: int = ADMIN_ROLE,
                  metadata: tuple[tuple[str, str], ...] | None = None) -> str:
    reply = await registry.stub.CreateOperator(pb.CreateOperatorRequest(name=name, role=role),
                                               metadata=metadata or registry.admin())
    assert reply.operator.name == name and reply.operator.role == role
    return reply.token


async def _actors(registry, subject: str) -> list[tuple[str, str]]:
    """(action, actor) of ``subject``'s changes, oldest first."""
    reply = await registry.stub.ListHistory(pb.ListHistoryRequest(subject=subject),
                                            metadata=registry.read())
    return [(r.action, r.actor) for r in reversed(reply.records)]


async def _code(call) -> grpc.StatusCode:  # noqa: ANN001 - an awaitable RPC
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_an_operator_token_changes_and_the_history_names_its_operator(registry) -> None:
    token = await _create(registry, "alice")
    # A header cannot rename an operator: the token is the identity.
    as_alice = (*bearer(token), ("x-edgeloop-actor", "mallory"))
    await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="car-1"),
                                       metadata=as_alice)
    await registry.stub.CreateOperator(pb.CreateOperatorRequest(name="bob", role=READ_ROLE),
                                       metadata=as_alice)
    assert await _actors(registry, "device/car-1") == [("register", "operator:alice")]
    assert await _actors(registry, "operator/alice") == [("create", "admin")]
    assert await _actors(registry, "operator/bob") == [("create", "operator:alice")]


async def test_a_read_operator_reads_but_cannot_change(registry) -> None:
    token = await _create(registry, "auditor", READ_ROLE)
    listed = await registry.stub.ListDevices(pb.ListDevicesRequest(), metadata=bearer(token))
    assert list(listed.devices) == []
    for call in (registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="car-2"),
                                              metadata=bearer(token)),
                 registry.stub.CreateOperator(pb.CreateOperatorRequest(name="me2",
                                                                       role=ADMIN_ROLE),
                                              metadata=bearer(token)),
                 registry.stub.ListOperators(pb.ListOperatorsRequest(), metadata=bearer(token))):
        assert await _code(call) == grpc.StatusCode.PERMISSION_DENIED
    every = await registry.stub.ListOperators(pb.ListOperatorsRequest(), metadata=registry.admin())
    assert [o.name for o in every.operators] == ["auditor"]
    assert await _actors(registry, "device/car-2") == []


async def test_rotated_away_and_revoked_tokens_are_refused_at_once(registry) -> None:
    first = await _create(registry, "carol")

    def change(token: str, device_id: str):  # noqa: ANN202 - the pending call
        return registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id=device_id),
                                            metadata=bearer(token))

    assert await _code(change(first, "car-3")) == grpc.StatusCode.OK
    rotated = await registry.stub.RotateOperatorToken(
        pb.RotateOperatorTokenRequest(name="carol"), metadata=registry.admin())
    second = rotated.token
    assert second != first and rotated.operator.token_rotated_at.ToDatetime() > \
        rotated.operator.created_at.ToDatetime()
    assert await _code(change(first, "car-4")) == grpc.StatusCode.UNAUTHENTICATED
    assert await _code(change(second, "car-5")) == grpc.StatusCode.OK
    revoked = await registry.stub.RevokeOperator(pb.RevokeOperatorRequest(name="carol"),
                                                 metadata=registry.admin())
    assert revoked.operator.revoked and revoked.operator.HasField("revoked_at")
    assert await _code(change(second, "car-6")) == grpc.StatusCode.UNAUTHENTICATED
    assert await _code(registry.stub.ListDevices(pb.ListDevicesRequest(),
                                                 metadata=bearer(second))) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert await _actors(registry, "operator/carol") == [
        ("create", "admin"), ("rotate", "admin"), ("revoke", "admin")]
    again = await registry.stub.RevokeOperator(pb.RevokeOperatorRequest(name="carol"),
                                               metadata=registry.admin())
    assert again.operator.revoked_at == revoked.operator.revoked_at
    assert await _code(registry.stub.RotateOperatorToken(
        pb.RotateOperatorTokenRequest(name="carol"), metadata=registry.admin())) == \
        grpc.StatusCode.FAILED_PRECONDITION
    assert await _code(registry.stub.CreateOperator(
        pb.CreateOperatorRequest(name="carol", role=ADMIN_ROLE), metadata=registry.admin())) == \
        grpc.StatusCode.ALREADY_EXISTS
    active = await registry.stub.ListOperators(pb.ListOperatorsRequest(), metadata=registry.admin())
    every = await registry.stub.ListOperators(pb.ListOperatorsRequest(include_revoked=True),
                                              metadata=registry.admin())
    assert list(active.operators) == [] and [o.name for o in every.operators] == ["carol"]


async def test_the_admin_token_records_a_declared_name_only_as_on_behalf_of(registry) -> None:
    for device_id, header in [("car-7", "tester@console"), ("car-8", ""), ("car-9", "bad name!")]:
        metadata = registry.admin() + ((("x-edgeloop-actor", header),) if header else ())
        await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id=device_id),
                                           metadata=metadata)
    assert await _actors(registry, "device/car-7") == [
        ("register", "admin (on behalf of tester@console)")]
    assert await _actors(registry, "device/car-8") == [("register", "admin")]
    assert await _actors(registry, "device/car-9") == [("register", "admin")]


async def test_who_am_i_names_each_kind_of_token(registry) -> None:
    token = await _create(registry, "dora", READ_ROLE)
    me = await registry.stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(token))
    assert (me.actor, me.role, me.operator.name) == ("operator:dora", READ_ROLE, "dora")
    admin = await registry.stub.WhoAmI(pb.WhoAmIRequest(),
                                       metadata=registry.admin() + (("x-edgeloop-actor", "x"),))
    assert (admin.actor, admin.role, admin.HasField("operator")) == (
        "admin (on behalf of x)", ADMIN_ROLE, False)
    read = await registry.stub.WhoAmI(pb.WhoAmIRequest(), metadata=registry.read())
    assert read.role == READ_ROLE and not read.HasField("operator")
    assert await _code(registry.stub.WhoAmI(pb.WhoAmIRequest(),
                                            metadata=bearer(token + "x"))) == \
        grpc.StatusCode.UNAUTHENTICATED


async def test_operator_requests_are_checked_and_errors_name_the_field(registry) -> None:
    cases = [(pb.CreateOperatorRequest(name="bad name", role=ADMIN_ROLE),
              grpc.StatusCode.INVALID_ARGUMENT, "name:"),
             (pb.CreateOperatorRequest(name="eve"), grpc.StatusCode.INVALID_ARGUMENT, "role:")]
    for request, code, prefix in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await registry.stub.CreateOperator(request, metadata=registry.admin())
        assert caught.value.code() == code and caught.value.details().startswith(prefix)
    for call in (registry.stub.RevokeOperator(pb.RevokeOperatorRequest(name="ghost"),
                                              metadata=registry.admin()),
                 registry.stub.RotateOperatorToken(pb.RotateOperatorTokenRequest(name="ghost"),
                                                   metadata=registry.admin())):
        assert await _code(call) == grpc.StatusCode.NOT_FOUND


async def test_operator_tokens_are_stored_as_digests_and_never_logged(
        registry, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = await _create(registry, "frank")
    await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="car-10"),
                                       metadata=bearer(token))
    wrong = token[:-2] + "xx"
    assert await _code(registry.stub.ListDevices(pb.ListDevicesRequest(),
                                                 metadata=bearer(wrong))) == \
        grpc.StatusCode.UNAUTHENTICATED
    rotated = (await registry.stub.RotateOperatorToken(
        pb.RotateOperatorTokenRequest(name="frank"), metadata=registry.admin())).token
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT name, role, token_sha256 FROM registry.operators")
        row = await cursor.fetchone()
    assert bytes(row[2]) == hashlib.sha256(rotated.encode()).digest()
    listed = await registry.stub.ListOperators(pb.ListOperatorsRequest(), metadata=registry.admin())
    history = await registry.stub.ListHistory(pb.ListHistoryRequest(), metadata=registry.admin())
    for secret in (token, wrong, rotated):
        assert all(secret not in str(value) for value in row)
        for reply in (listed, history):
            assert secret.encode() not in reply.SerializeToString()
        assert secret not in caplog.text
        assert all(secret not in str(r.__dict__) for r in caplog.records)


async def test_another_instance_refuses_a_revoked_operator_within_its_ttl(
        registry, registry_factory, tmp_path) -> None:
    """Revoked through one instance, refused by another sharing the database within its TTL."""
    token = await _create(registry, "gina")
    ttl_s = 0.5
    async with registry_factory(tmp_path / "other", operator_auth_ttl_s=ttl_s) as other:
        listing = pb.ListDevicesRequest()
        assert await _code(other.stub.ListDevices(listing, metadata=bearer(token))) == \
            grpc.StatusCode.OK  # the other instance has read the operator's digest now
        await registry.stub.RevokeOperator(pb.RevokeOperatorRequest(name="gina"),
                                           metadata=registry.admin())
        revoked_at = time.monotonic()
        while await _code(other.stub.ListDevices(listing, metadata=bearer(token))) == \
                grpc.StatusCode.OK:
            assert time.monotonic() - revoked_at < ttl_s + 5.0, "still accepted"
            await asyncio.sleep(0.05)


TRAINER_TOKEN = "trainer-service-token-0123456789"


async def test_a_service_token_changes_as_that_service(registry_factory, tmp_path) -> None:
    async with registry_factory(tmp_path / "repository",
                                service_tokens=f"trainer={TRAINER_TOKEN}") as registry:
        as_trainer = (*bearer(TRAINER_TOKEN), ("x-edgeloop-actor", "alice"))
        await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="car-3"),
                                           metadata=as_trainer)
        assert await _actors(registry, "device/car-3") == [("register", "service:trainer")]
        me = await registry.stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(TRAINER_TOKEN))
        assert (me.actor, me.role) == ("service:trainer", ADMIN_ROLE)
        assert await _code(registry.stub.WhoAmI(
            pb.WhoAmIRequest(), metadata=bearer(TRAINER_TOKEN[:-1]))) == \
            grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("value", "problem"), [
    ("trainer", "must be name=token"), ("trainer=short", "at least 16 characters"),
    (f"bad name={TRAINER_TOKEN}", "must be name=token"),
    (f"trainer={TRAINER_TOKEN},trainer={TRAINER_TOKEN}x", "named twice")])
def test_bad_service_tokens_are_refused_naming_the_problem_not_the_token(
        value: str, problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.platform import ConfigError, load_settings
    from edgeloop.registry.settings import Settings

    for name, setting in {"DATABASE_URL": "postgresql://x", "MLFLOW_TRACKING_URI": "sqlite://",
                          "ADMIN_TOKEN": "a" * 16, "MODEL_REPOSITORY": "models",
                          "SERVICE_TOKENS": value}.items():
        monkeypatch.setenv(f"EDGELOOP_{name}", setting)
    with pytest.raises(ConfigError, match=problem) as refused:
        load_settings(Settings)
    assert "EDGELOOP_SERVICE_TOKENS" in str(refused.value)
    assert "short" not in str(refused.value) and TRAINER_TOKEN not in str(refused.value)
