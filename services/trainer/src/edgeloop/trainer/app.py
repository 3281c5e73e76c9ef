"""The trainer service: its gRPC servicer and life cycle.

At start: migrations, Ray (local or joined), the sweep manager (failing sweeps a
previous process left RUNNING, resuming the queue) and the Grafana webhook.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from edgeloop.contracts.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc
from edgeloop.platform import ServiceApp, open_channel
from edgeloop.platform.objectstore import open_object_store
from edgeloop.trainer.events import EventBus
from edgeloop.trainer.library_notices import silence_library_notices
from edgeloop.trainer.raycluster import (
    RayInfo,
    reclaim_signal_handlers,
    start_ray,
    stop_ray,
)
from edgeloop.trainer.settings import Settings
from edgeloop.trainer.store import SweepStore
from edgeloop.trainer.sweeps import Dependencies, SweepManager, default_work_dir
from edgeloop.trainer.webhook import GrafanaWebhook
from grpc import aio

SERVICE = trainer_service_pb2.DESCRIPTOR.services_by_name["TrainerService"]
pb = trainer_service_pb2


class TrainerService(trainer_service_pb2_grpc.TrainerServiceServicer):
    """The TrainerService contract over the sweep manager."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def StartSweep(
        self, request: pb.StartSweepRequest, context: aio.ServicerContext
    ) -> pb.StartSweepResponse:
        return pb.StartSweepResponse(sweep=await self.app.manager.submit(request))

    async def GetSweep(
        self, request: pb.GetSweepRequest, context: aio.ServicerContext
    ) -> pb.GetSweepResponse:
        return pb.GetSweepResponse(sweep=await self.app.manager.get(_sweep_id(request.sweep_id)))

    async def WatchSweep(
        self, request: pb.WatchSweepRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.WatchSweepResponse]:
        async for event in self.app.bus.watch(_sweep_id(request.sweep_id)):
            yield pb.WatchSweepResponse(event=event)

    async def ListSweeps(
        self, request: pb.ListSweepsRequest, context: aio.ServicerContext
    ) -> pb.ListSweepsResponse:
        sweeps = await self.app.store.list(
            request.model_name, min(request.limit or 50, 500), request.observation_id
        )
        live = self.app.manager.live
        return pb.ListSweepsResponse(sweeps=[live.get(s.sweep_id, s) for s in sweeps])

    async def CancelSweep(
        self, request: pb.CancelSweepRequest, context: aio.ServicerContext
    ) -> pb.CancelSweepResponse:
        return pb.CancelSweepResponse(
            sweep=await self.app.manager.cancel(_sweep_id(request.sweep_id))
        )


def _sweep_id(value: str) -> str:
    from edgeloop.platform.errors import InvalidArgument

    if not value:
        raise InvalidArgument("sweep_id", "required")
    return value


class App(ServiceApp):
    """The trainer service."""

    name = "trainer"

    def __init__(self, settings: Settings) -> None:
        silence_library_notices()
        self.settings = settings
        self.store = SweepStore(settings.database_url)
        self.bus = EventBus(self.store)
        self.webhook: GrafanaWebhook | None = None
        self.ray: RayInfo | None = None
        self.manager: SweepManager

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        trainer_service_pb2_grpc.add_TrainerServiceServicer_to_server(TrainerService(self), server)

    async def start(self) -> None:
        s = self.settings
        objects = open_object_store(
            s.object_store_dir,
            s.s3_endpoint,
            s.s3_access_key,
            s.s3_secret_key,
            s.s3_bucket,
            s.s3_secure,
        )
        await self.store.open()
        self.bus.loop = asyncio.get_running_loop()
        self.ray = await asyncio.to_thread(start_ray, s)
        reclaim_signal_handlers()  # on the loop's (main) thread: see its doc
        work_dir = Path(s.work_dir) if s.work_dir else default_work_dir()
        work_dir.mkdir(parents=True, exist_ok=True)
        self.manager = SweepManager(
            Dependencies(
                settings=s,
                store=self.store,
                bus=self.bus,
                objects=objects,
                features=open_channel(s.features_addr, tls=s.client_tls()),
                registry=open_channel(s.registry_addr, tls=s.client_tls()),
                work_dir=work_dir,
                total_cpus=self.ray.total_cpus,
                node_cpus=self.ray.node_cpus,
            )
        )
        await self.manager.recover()
        if s.webhook_addr:
            self.webhook = GrafanaWebhook(self.store, self.manager.submit, s.webhook_secret,
                                          tls=s.server_tls())
            await self.webhook.start(s.webhook_addr)

    async def stop(self) -> None:
        if self.webhook is not None:
            await self.webhook.stop()
        if hasattr(self, "manager"):
            await self.manager.close()
            await self.manager.deps.features.close()
            await self.manager.deps.registry.close()
        await self.store.close()
        if self.ray is not None:
            await asyncio.to_thread(stop_ray, self.ray)


def build_app(settings: Settings) -> App:
    """Build the service from its settings."""
    return App(settings)
