"""Admin/read tokens and device tokens: refusals, one-time tokens, nothing logged."""

from __future__ import annotations

import logging

import grpc
import pytest
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.platform import bearer


async def test_missing_and_wrong_tokens_are_unauthenticated(registry) -> None:
    no_scheme = (("authorization", registry.admin_token),)
    for metadata in [(), bearer("not-the-admin-token-at-all"), no_scheme]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await registry.stub.ListDevices(pb.ListDevicesRequest(), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_read_token_reads_but_cannot_change(registry) -> None:
    listed = await registry.stub.ListDevices(pb.ListDevicesRequest(), metadata=registry.read())
    assert list(listed.devices) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(name="car"),
                                           metadata=registry.read())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin token" in caught.value.details()


async def test_device_token_shown_once_and_authenticates(
        registry, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = await registry.stub.RegisterDevice(
        pb.RegisterDeviceRequest(name="car 1", device_id="car-1"), metadata=registry.admin())
    token = created.token
    assert created.device.device_id == "car-1" and len(token) >= 40
    auth = await registry.stub.AuthenticateDevice(
        pb.AuthenticateDeviceRequest(device_id="car-1", token=token), metadata=registry.read())
    assert auth.device.device_id == "car-1" and auth.cache_ttl_seconds == 30
    listed = await registry.stub.ListDevices(pb.ListDevicesRequest(), metadata=registry.admin())
    history = await registry.stub.ListHistory(pb.ListHistoryRequest(), metadata=registry.admin())
    for reply in (auth, listed, history):
        assert token.encode() not in reply.SerializeToString()
    assert token not in caplog.text
    assert all(token not in str(r.__dict__) for r in caplog.records)


async def test_wrong_revoked_and_rotated_device_tokens_are_refused(registry) -> None:
    token = (await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="car-2"),
                                                metadata=registry.admin())).token

    async def authenticate(device_id: str, presented: str) -> grpc.StatusCode:
        try:
            await registry.stub.AuthenticateDevice(
                pb.AuthenticateDeviceRequest(device_id=device_id, token=presented),
                metadata=registry.read())
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    assert await authenticate("car-2", token) == grpc.StatusCode.OK
    assert await authenticate("car-2", token + "x") == grpc.StatusCode.UNAUTHENTICATED
    assert await authenticate("car-404", token) == grpc.StatusCode.UNAUTHENTICATED
    rotated = await registry.stub.RotateDeviceToken(pb.RotateDeviceTokenRequest(device_id="car-2"),
                                                    metadata=registry.admin())
    assert rotated.token != token
    assert await authenticate("car-2", token) == grpc.StatusCode.UNAUTHENTICATED
    assert await authenticate("car-2", rotated.token) == grpc.StatusCode.OK
    revoked = await registry.stub.RevokeDevice(pb.RevokeDeviceRequest(device_id="car-2"),
                                               metadata=registry.admin())
    assert revoked.device.revoked and revoked.device.HasField("revoked_at")
    assert await authenticate("car-2", rotated.token) == grpc.StatusCode.UNAUTHENTICATED
    active = await registry.stub.ListDevices(pb.ListDevicesRequest(), metadata=registry.admin())
    assert [d.device_id for d in active.devices] == []
    every = await registry.stub.ListDevices(pb.ListDevicesRequest(include_revoked=True),
                                            metadata=registry.admin())
    assert [d.device_id for d in every.devices] == ["car-2"]


async def test_only_the_digest_is_stored(registry, database_url: str) -> None:
    import hashlib

    import psycopg

    token = (await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="car-3"),
                                                metadata=registry.admin())).token
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT * FROM registry.devices")
        row = await cursor.fetchone()
    assert bytes(row[2]) == hashlib.sha256(token.encode()).digest()
    assert all(token not in str(value) for value in row)


async def test_device_errors_name_the_field(registry) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="bad id!"),
                                           metadata=registry.admin())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("device_id:")
    await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="twin"),
                                       metadata=registry.admin())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="twin"),
                                           metadata=registry.admin())
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.RevokeDevice(pb.RevokeDeviceRequest(device_id="ghost"),
                                         metadata=registry.admin())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

