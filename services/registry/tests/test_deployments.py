"""Deployments: validation naming the field, create/update/activate/assign, history."""

from __future__ import annotations

import json

import grpc
import pytest
from edgeloop.contracts.registry.v1 import deployment_pb2 as dpb
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb

S = dpb.Strategy


def selector(**kind: object) -> dpb.VersionSelector:
    return dpb.VersionSelector(**kind)


INVALID = [
    (dpb.Deployment(name=""), "deployment.name"),
    (dpb.Deployment(name="x", model_name="m"), "deployment.selector"),
    (dpb.Deployment(name="x", model_name="m", selector=selector(version="abc")),
     "deployment.selector.version"),
    (dpb.Deployment(name="x", model_name="m", selector=selector(alias="latest")),
     "deployment.selector.alias"),
    (dpb.Deployment(name="x", model_name="m", selector=selector(latest=True),
                    strategy=S.STRATEGY_CANARY, challenger=selector(latest=True)),
     "deployment.canary_fraction"),
    (dpb.Deployment(name="x", model_name="m", selector=selector(latest=True),
                    strategy=S.STRATEGY_CANARY, challenger=selector(latest=True),
                    canary_fraction=1.0), "deployment.canary_fraction"),
    (dpb.Deployment(name="x", model_name="m", selector=selector(latest=True),
                    strategy=S.STRATEGY_SHADOW), "deployment.challenger"),
    (dpb.Deployment(name="x", model_name="m", strategy=S.STRATEGY_BANDIT,
                    arms=[dpb.Arm(name="one", selector=selector(latest=True))]), "deployment.arms"),
    (dpb.Deployment(name="x", model_name="m", strategy=S.STRATEGY_BANDIT,
                    arms=[dpb.Arm(name="one", selector=selector(latest=True)),
                          dpb.Arm(name="one", selector=selector(version="1"))]),
     "deployment.arms[1].name"),
    (dpb.Deployment(name="x", selector=selector(latest=True)), "deployment.selector"),
    (dpb.Deployment(name="x", model_name="../etc", selector=selector(latest=True)),
     "deployment.model_name"),
    (dpb.Deployment(name="unassigned"), "deployment.name"),  # gateways' group for no deployment
]


@pytest.mark.parametrize(("deployment", "field"), INVALID)
async def test_invalid_deployments_name_the_field(registry, deployment: dpb.Deployment,
                                                  field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await registry.stub.CreateDeployment(pb.CreateDeploymentRequest(deployment=deployment),
                                             metadata=registry.admin())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}:"), caught.value.details()
    listed = await registry.stub.ListDeployments(pb.ListDeploymentsRequest(),
                                                 metadata=registry.admin())
    assert list(listed.deployments) == []


async def test_deployment_life_cycle_and_history(registry) -> None:
    stub, admin = registry.stub, registry.admin()
    created = (await stub.CreateDeployment(pb.CreateDeploymentRequest(deployment=dpb.Deployment(
        name="parking", model_name="distance", selector=selector(alias="champion"),
        strategy=S.STRATEGY_CANARY, challenger=selector(latest=True), canary_fraction=0.1)),
        metadata=admin)).deployment
    assert created.revision == 1 and not created.active and created.data_group == "parking"
    # Nothing is registered yet: both arms resolve to no version.
    assert [(a.arm, a.model_version) for a in created.resolved] == [("stable", ""), ("canary", "")]
    collecting = (await stub.CreateDeployment(pb.CreateDeploymentRequest(
        deployment=dpb.Deployment(name="collect", active=True)), metadata=admin)).deployment
    assert collecting.active and list(collecting.resolved) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateDeployment(pb.CreateDeploymentRequest(
            deployment=dpb.Deployment(name="parking")), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

    updated = (await stub.UpdateDeployment(pb.UpdateDeploymentRequest(
        deployment=dpb.Deployment(name="parking", model_name="distance",
                                  selector=selector(version="1")), expected_revision=1),
        metadata=admin)).deployment
    assert updated.revision == 2 and updated.strategy == S.STRATEGY_DIRECT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateDeployment(pb.UpdateDeploymentRequest(
            deployment=dpb.Deployment(name="parking"), expected_revision=1), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details().startswith("expected_revision:")

    activated = (await stub.ActivateDeployment(pb.ActivateDeploymentRequest(
        name="parking", active=True), metadata=admin)).deployment
    assert activated.active and activated.revision == 3
    active_only = await stub.ListDeployments(pb.ListDeploymentsRequest(active_only=True),
                                             metadata=registry.read())
    assert [d.name for d in active_only.deployments] == ["collect", "parking"]

    await stub.RegisterDevice(pb.RegisterDeviceRequest(device_id="car-1"), metadata=admin)
    assigned = await stub.AssignDevices(pb.AssignDevicesRequest(
        deployment="parking", device_ids=["car-1"]), metadata=admin)
    assert [(a.device_id, a.deployment) for a in assigned.assignments] == [("car-1", "parking")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AssignDevices(pb.AssignDevicesRequest(
            deployment="parking", device_ids=["car-1", "ghost"]), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    devices = await stub.ListDevices(pb.ListDevicesRequest(), metadata=admin)
    assert [d.deployment for d in devices.devices] == ["parking"]

    changes = await stub.ListHistory(pb.ListHistoryRequest(subject="deployment/parking"),
                                     metadata=registry.read())
    assert [c.action for c in changes.records] == ["assign", "activate", "update", "create"]
    assert json.loads(changes.records[-1].detail)["strategy"] == "STRATEGY_CANARY"
    got = await stub.GetDeployment(pb.GetDeploymentRequest(name="parking"), metadata=admin)
    assert got.deployment.revision == 3
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetDeployment(pb.GetDeploymentRequest(name="nope"), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_device_shadow_is_stored_and_returned(registry) -> None:
    stub, admin = registry.stub, registry.admin()
    await stub.CreateDeployment(pb.CreateDeploymentRequest(deployment=dpb.Deployment(
        name="robots", model_name="distance", selector=selector(alias="champion"),
        device_shadow=True)), metadata=admin)
    got = (await stub.GetDeployment(pb.GetDeploymentRequest(name="robots"),
                                    metadata=admin)).deployment
    assert got.device_shadow
    updated = (await stub.UpdateDeployment(pb.UpdateDeploymentRequest(deployment=dpb.Deployment(
        name="robots", model_name="distance", selector=selector(alias="champion"))),
        metadata=admin)).deployment
    assert not updated.device_shadow
