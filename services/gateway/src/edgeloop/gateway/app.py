"""The gateway service: its gRPC servicers and life cycle."""

from __future__ import annotations

from collections.abc import Sequence

from grpc import aio

from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2, edge_gateway_service_pb2_grpc
from edgeloop.gateway.settings import Settings
from edgeloop.platform import ServiceApp
from edgeloop.platform.pending import pending

SERVICE = edge_gateway_service_pb2.DESCRIPTOR.services_by_name["EdgeGatewayService"]


class EdgeGatewayService(pending(edge_gateway_service_pb2_grpc.EdgeGatewayServiceServicer, SERVICE, "issue #5 (data plane)")):
    """The EdgeGatewayService contract; RPCs not built yet answer UNIMPLEMENTED."""


class App(ServiceApp):
    """The gateway service."""

    name = "gateway"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        edge_gateway_service_pb2_grpc.add_EdgeGatewayServiceServicer_to_server(EdgeGatewayService(), server)


def build_app(settings: Settings) -> App:
    """Build the service from its settings."""
    return App(settings)
