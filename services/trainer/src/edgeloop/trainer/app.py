"""The trainer service: its gRPC servicers and life cycle."""

from __future__ import annotations

from collections.abc import Sequence

from grpc import aio

from edgeloop.contracts.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc
from edgeloop.trainer.settings import Settings
from edgeloop.platform import ServiceApp
from edgeloop.platform.pending import pending

SERVICE = trainer_service_pb2.DESCRIPTOR.services_by_name["TrainerService"]


class TrainerService(pending(trainer_service_pb2_grpc.TrainerServiceServicer, SERVICE, "issue #6 (trainer)")):
    """The TrainerService contract; RPCs not built yet answer UNIMPLEMENTED."""


class App(ServiceApp):
    """The trainer service."""

    name = "trainer"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        trainer_service_pb2_grpc.add_TrainerServiceServicer_to_server(TrainerService(), server)


def build_app(settings: Settings) -> App:
    """Build the service from its settings."""
    return App(settings)
