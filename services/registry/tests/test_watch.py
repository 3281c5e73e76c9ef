"""WatchDeployments: a snapshot first, then every change, seen by every watcher at once."""

from __future__ import annotations

import asyncio

from edgeloop.contracts.registry.v1 import deployment_pb2 as dpb
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb

PUSHED_S = 20.0
"""A change must reach watchers within this: generous for a loaded machine, yet well under
the tests' 60 s refresh poll (conftest), so only a change that is pushed arrives in time."""


async def _next(stream, timeout: float = PUSHED_S) -> pb.WatchDeploymentsResponse:
    """The next message, which must arrive within ``timeout`` seconds."""
    return await asyncio.wait_for(stream.read(), timeout)


async def test_second_watcher_sees_a_change_pushed(registry) -> None:
    stub, admin = registry.stub, registry.admin()
    await stub.CreateDeployment(pb.CreateDeploymentRequest(deployment=dpb.Deployment(
        name="before", active=True)), metadata=admin)
    await stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="car-1", deployment="before"),
                              metadata=admin)
    first = stub.WatchDeployments(pb.WatchDeploymentsRequest(watcher="gw-1"),
                                  metadata=registry.read())
    second = stub.WatchDeployments(pb.WatchDeploymentsRequest(watcher="gw-2"),
                                   metadata=registry.read())
    try:
        for stream in (first, second):
            snapshot = await _next(stream, 60)
            assert snapshot.snapshot
            assert [d.name for d in snapshot.deployments] == ["before"]
            assert [(a.device_id, a.deployment) for a in snapshot.assignments] == [
                ("car-1", "before")]

        await stub.CreateDeployment(pb.CreateDeploymentRequest(deployment=dpb.Deployment(
            name="after", model_name="distance", selector=dpb.VersionSelector(latest=True))),
            metadata=admin)
        for stream in (first, second):
            change = await _next(stream)
            assert not change.snapshot
            assert [d.name for d in change.deployments] == ["after"]
            assert [a.arm for a in change.deployments[0].resolved] == ["stable"]

        await stub.ActivateDeployment(pb.ActivateDeploymentRequest(name="after", active=True),
                                      metadata=admin)
        assert (await _next(second)).deployments[0].active
        assert (await _next(first)).deployments[0].active

        await stub.AssignDevices(pb.AssignDevicesRequest(deployment="after",
                                                         device_ids=["car-1"]), metadata=admin)
        moved = await _next(second)
        assert [(a.device_id, a.deployment) for a in moved.assignments] == [("car-1", "after")]
        await _next(first)

        await stub.RotateDeviceToken(pb.RotateDeviceTokenRequest(device_id="car-1"),
                                     metadata=admin)
        assert list((await _next(second)).revoked_device_ids) == ["car-1"]
        await _next(first)
        await stub.RevokeDevice(pb.RevokeDeviceRequest(device_id="car-1"), metadata=admin)
        assert list((await _next(second)).revoked_device_ids) == ["car-1"]
    finally:
        first.cancel()
        second.cancel()


async def test_watch_needs_a_token(registry) -> None:
    import grpc
    import pytest

    stream = registry.stub.WatchDeployments(pb.WatchDeploymentsRequest())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
