"""The features service: its gRPC servicers and life cycle."""

from __future__ import annotations

from collections.abc import Sequence

from grpc import aio

from edgeloop.contracts.features.v1 import feature_store_service_pb2, feature_store_service_pb2_grpc
from edgeloop.features.settings import Settings
from edgeloop.platform import ServiceApp
from edgeloop.platform.pending import pending

SERVICE = feature_store_service_pb2.DESCRIPTOR.services_by_name["FeatureStoreService"]


class FeatureStoreService(pending(feature_store_service_pb2_grpc.FeatureStoreServiceServicer, SERVICE, "issue #5 (data plane)")):
    """The FeatureStoreService contract; RPCs not built yet answer UNIMPLEMENTED."""


class App(ServiceApp):
    """The features service."""

    name = "features"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        feature_store_service_pb2_grpc.add_FeatureStoreServiceServicer_to_server(FeatureStoreService(), server)


def build_app(settings: Settings) -> App:
    """Build the service from its settings."""
    return App(settings)
