"""The registry side of the demo: the robot, its deployments, and the model versions."""

from __future__ import annotations

from edgeloop.compose.demo.drives import Device
from edgeloop.compose.demo.services import Services
from edgeloop.contracts.registry.v1 import deployment_pb2, model_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as rpb
from edgeloop.platform import DEFAULT_DEADLINE_S


async def create_deployment(services: Services, name: str, data_group: str,
                            model_name: str = "", description: str = "") -> deployment_pb2.Deployment:
    """An active deployment: data collection without a model, or direct on the champion."""
    deployment = deployment_pb2.Deployment(name=name, data_group=data_group, active=True,
                                           strategy=deployment_pb2.STRATEGY_DIRECT,
                                           description=description)
    if model_name:
        deployment.model_name = model_name
        deployment.selector.CopyFrom(deployment_pb2.VersionSelector(alias="champion"))
    reply = await services.call("registry", "CreateDeployment", lambda: services.registry
                                .CreateDeployment(rpb.CreateDeploymentRequest(deployment=deployment),
                                                  timeout=DEFAULT_DEADLINE_S, metadata=services.admin))
    if not reply.deployment.active:
        await activate(services, name, True)
    return reply.deployment


async def activate(services: Services, name: str, active: bool) -> None:
    """Switch a deployment on or off."""
    await services.call("registry", "ActivateDeployment", lambda: services.registry
                        .ActivateDeployment(rpb.ActivateDeploymentRequest(name=name, active=active),
                                            timeout=DEFAULT_DEADLINE_S, metadata=services.admin))


async def register_device(services: Services, name: str, deployment: str) -> Device:
    """A new device assigned to ``deployment``; the token is shown only now."""
    reply = await services.call("registry", "RegisterDevice", lambda: services.registry
                                .RegisterDevice(rpb.RegisterDeviceRequest(name=name,
                                                                          deployment=deployment),
                                                timeout=DEFAULT_DEADLINE_S, metadata=services.admin))
    return Device(reply.device.device_id, reply.token)


async def assign(services: Services, device: Device, deployment: str) -> None:
    """Move the device to ``deployment``."""
    await services.call("registry", "AssignDevices", lambda: services.registry.AssignDevices(
        rpb.AssignDevicesRequest(deployment=deployment, device_ids=[device.device_id]),
        timeout=DEFAULT_DEADLINE_S, metadata=services.admin))


async def versions(services: Services, model: str) -> list[model_pb2.ModelVersion]:
    """The model's versions, newest first."""
    reply = await services.call("registry", "ListModelVersions", lambda: services.registry
                                .ListModelVersions(rpb.ListModelVersionsRequest(model_name=model),
                                                   timeout=DEFAULT_DEADLINE_S, metadata=services.admin))
    return list(reply.versions)


async def champion(services: Services, model: str) -> str:
    """The version the champion alias points at, or ''."""
    return next((v.version for v in await versions(services, model) if "champion" in v.aliases), "")


async def resolved_version(services: Services, deployment: str) -> str:
    """The version the deployment's primary arm resolves to now, or ''."""
    reply = await services.call("registry", "GetDeployment", lambda: services.registry
                                .GetDeployment(rpb.GetDeploymentRequest(name=deployment),
                                               timeout=DEFAULT_DEADLINE_S, metadata=services.admin))
    arms = {arm.arm: arm.model_version for arm in reply.deployment.resolved}
    return arms.get("stable") or next(iter(arms.values()), "")
