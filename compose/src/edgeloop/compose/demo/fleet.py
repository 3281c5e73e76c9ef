"""The registry side of the demo: the robot, its deployments, and the model versions."""

from __future__ import annotations

from typing import Any

from edgeloop.compose.demo.drives import Device
from edgeloop.compose.demo.services import Services
from edgeloop.contracts.registry.v1 import deployment_pb2, model_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as rpb
from edgeloop.platform import DEFAULT_DEADLINE_S


async def _admin(services: Services, method: str, request: Any) -> Any:
    """A registry call with the admin token, failures naming the registry and its log."""
    stub_method = getattr(services.registry, method)
    return await services.call("registry", method, lambda: stub_method(
        request, timeout=DEFAULT_DEADLINE_S, metadata=services.admin))


async def create_deployment(services: Services, name: str, data_group: str,
                            model_name: str = "",
                            description: str = "") -> deployment_pb2.Deployment:
    """An active deployment: data collection without a model, or direct on the champion."""
    deployment = deployment_pb2.Deployment(name=name, data_group=data_group, active=True,
                                           strategy=deployment_pb2.STRATEGY_DIRECT,
                                           description=description)
    if model_name:
        deployment.model_name = model_name
        deployment.selector.CopyFrom(deployment_pb2.VersionSelector(alias="champion"))
    reply = await _admin(services, "CreateDeployment",
                         rpb.CreateDeploymentRequest(deployment=deployment))
    if not reply.deployment.active:
        await activate(services, name, True)
    return reply.deployment


async def pin_version(services: Services, name: str, version: str) -> None:
    """Point a deployment at one exact version instead of the moving champion."""
    reply = await _admin(services, "GetDeployment", rpb.GetDeploymentRequest(name=name))
    pinned = reply.deployment
    pinned.selector.CopyFrom(deployment_pb2.VersionSelector(version=version))
    await _admin(services, "UpdateDeployment", rpb.UpdateDeploymentRequest(deployment=pinned))


async def activate(services: Services, name: str, active: bool) -> None:
    """Switch a deployment on or off."""
    await _admin(services, "ActivateDeployment",
                 rpb.ActivateDeploymentRequest(name=name, active=active))


async def register_device(services: Services, name: str, deployment: str) -> Device:
    """A new device assigned to ``deployment``; the token is shown only now."""
    reply = await _admin(services, "RegisterDevice",
                         rpb.RegisterDeviceRequest(name=name, deployment=deployment))
    return Device(reply.device.device_id, reply.token)


async def assign(services: Services, device: Device, deployment: str) -> None:
    """Move the device to ``deployment``."""
    await _admin(services, "AssignDevices", rpb.AssignDevicesRequest(
        deployment=deployment, device_ids=[device.device_id]))


async def versions(services: Services, model: str) -> list[model_pb2.ModelVersion]:
    """The model's versions, newest first."""
    reply = await _admin(services, "ListModelVersions",
                         rpb.ListModelVersionsRequest(model_name=model))
    return list(reply.versions)


async def champion(services: Services, model: str) -> str:
    """The version the champion alias points at, or ''."""
    return next((v.version for v in await versions(services, model) if "champion" in v.aliases), "")


async def resolved_version(services: Services, deployment: str) -> str:
    """The version the deployment's primary arm resolves to now, or ''."""
    reply = await _admin(services, "GetDeployment", rpb.GetDeploymentRequest(name=deployment))
    arms = {arm.arm: arm.model_version for arm in reply.deployment.resolved}
    return arms.get("stable") or next(iter(arms.values()), "")
