"""Which deployments the monitor watches: the registry's active ones and what they serve."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from edgeloop.contracts.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from edgeloop.platform import DEFAULT_DEADLINE_S, bearer
from edgeloop.platform.errors import Unavailable

UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class RegistryUnreachable(Unavailable):
    """The registry did not answer (not started yet, restarting, overloaded)."""

PRIMARY_ARMS = ("stable", "a")


@dataclass(frozen=True)
class ActiveDeployment:
    """An active deployment and the model version its primary arm resolves to."""

    name: str
    model_name: str
    model_version: str


class DeploymentSource:
    """Asks the registry for the active deployments at every evaluation."""

    def __init__(self, registry: registry_service_pb2_grpc.RegistryServiceStub, token: str) -> None:
        self.registry = registry
        self.token = token

    async def active(self) -> list[ActiveDeployment]:
        """Active deployments with their serving (primary arm) version; '' without a model.

        Raises :class:`RegistryUnreachable` while the registry cannot be reached (e.g. still
        starting: `edgeloop up` starts the services all at once)."""
        try:
            reply = await self.registry.ListDeployments(
                registry_service_pb2.ListDeploymentsRequest(active_only=True),
                timeout=DEFAULT_DEADLINE_S, metadata=bearer(self.token))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in UNREACHABLE:
                raise RegistryUnreachable(
                    f"the registry cannot be reached: {exc.details()}") from exc
            raise
        found = []
        for deployment in reply.deployments:
            arms = {arm.arm: arm for arm in deployment.resolved}
            primary = next((arms[name] for name in PRIMARY_ARMS if name in arms),
                           deployment.resolved[0] if deployment.resolved else None)
            found.append(ActiveDeployment(deployment.name, deployment.model_name,
                                          primary.model_version if primary else ""))
        return found
