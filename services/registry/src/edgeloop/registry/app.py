"""The registry service: its gRPC servicers and life cycle."""

from __future__ import annotations

from collections.abc import Sequence

from grpc import aio

from edgeloop.contracts.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from edgeloop.registry.settings import Settings
from edgeloop.platform import ServiceApp
from edgeloop.platform.pending import pending

SERVICE = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"]


class RegistryService(pending(registry_service_pb2_grpc.RegistryServiceServicer, SERVICE, "issue #4 (registry)")):
    """The RegistryService contract; RPCs not built yet answer UNIMPLEMENTED."""


class App(ServiceApp):
    """The registry service."""

    name = "registry"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryService(), server)


def build_app(settings: Settings) -> App:
    """Build the service from its settings."""
    return App(settings)
