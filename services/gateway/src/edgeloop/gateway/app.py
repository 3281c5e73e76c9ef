"""The gateway service: wiring of stream, auth, deployments, model host, spool and forwarder.

Start: the spool is opened (a torn tail from a crash is cut off), the recorder and the
forwarder start (a backlog left by an earlier run is replayed at once), and the
deployment watcher starts following the registry. Stop (after the server drained its
streams): frames still in flight finish, queued observations are committed to the
spool, the forwarder gets a short chance to flush, and what is left stays on disk for
the next start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence

from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2, edge_gateway_service_pb2_grpc
from edgeloop.gateway.auth import DeviceAuthenticator
from edgeloop.gateway.contacts import DeviceContacts
from edgeloop.gateway.deployments import DeploymentState, DeploymentWatcher
from edgeloop.gateway.device_predictions import DeviceModels, TwinCheck
from edgeloop.gateway.forwarder import Forwarder
from edgeloop.gateway.frames import FrameProcessor
from edgeloop.gateway.hosts.base import ModelHost
from edgeloop.gateway.hosts.batching import BatchingConfig, MicroBatcher
from edgeloop.gateway.hosts.served import ServedFrames
from edgeloop.gateway.hosts.twins import TwinJudge
from edgeloop.gateway.limits import DeviceLimits
from edgeloop.gateway.models_download import ModelFiles, tflite_path
from edgeloop.gateway.observations import Recorder
from edgeloop.gateway.routing import Router
from edgeloop.gateway.samples import PENDING_FILE, GatewaySampler
from edgeloop.gateway.settings import Settings
from edgeloop.gateway.spool import Spool
from edgeloop.gateway.status_file import StatusWriter, gateway_status, served_versions
from edgeloop.gateway.stream import EdgeGatewayService
from edgeloop.platform import ServiceApp, open_channel
from edgeloop.platform.gateway_status import read_status
from grpc import aio

log = logging.getLogger(__name__)

SERVICE = edge_gateway_service_pb2.DESCRIPTOR.services_by_name["EdgeGatewayService"]
STOP_FLUSH_S = 3.0
"""How long a stopping gateway tries to empty its spool into features."""
STOP_RECORD_S = 30.0
"""How long a stopping gateway keeps retrying observations its disk refuses."""


def build_model_host(settings: Settings) -> ModelHost:
    """The configured model host (embedded or TF Serving), without batching."""
    if settings.model_host == "tfserving":
        from edgeloop.gateway.hosts.tfserving import TFServingConfig, TFServingHost

        return TFServingHost(TFServingConfig(address=settings.tfserving_addr,
                                             deadline_s=settings.tfserving_deadline_s))
    from edgeloop.gateway.hosts.embedded import EmbeddedConfig, EmbeddedHost

    return EmbeddedHost(EmbeddedConfig(runtime=settings.model_runtime,
                                       quantized=settings.model_quantized))


class App(ServiceApp):
    """The gateway service."""

    name = "gateway"

    def __init__(self, settings: Settings, host: ModelHost | None = None) -> None:
        self.settings = settings
        self._host = host
        self.spool: Spool | None = None

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        """Build the components (inside the server's event loop) and register the stream."""
        s = self.settings
        self.host = self._host or build_model_host(s)
        # A host that runs twins itself judges them; behind another the gateway does, on the
        # frames it served.
        judges_twins = s.model_quantized and not hasattr(self.host, "runs_quantized_twin")
        served = ServedFrames() if judges_twins else None
        self.batcher = MicroBatcher(self.host, BatchingConfig(
            max_batch_size=s.batch_max_size, max_wait_ms=s.batch_max_wait_ms), served=served)
        self.twins = TwinJudge(self.batcher, functools.partial(
            tflite_path, model_repository=s.model_repository, quantized=True),
            served) if served is not None else None
        self.registry_channel = open_channel(s.registry_addr, tls=s.client_tls())
        self.features_channel = open_channel(s.features_addr, tls=s.client_tls())
        self.spool = Spool(s.spool_dir, s.spool_max_bytes)
        self.forwarder = Forwarder(self.spool, self.features_channel, s.forward_batch_size,
                                   s.forward_interval_ms / 1000)
        self.recorder = Recorder(self.spool, self.forwarder.notify_written,
                                 commit_wait_s=s.spool_commit_wait_ms / 1000)
        self.auth = DeviceAuthenticator(self.registry_channel, s.registry_token)
        self.state = DeploymentState()
        self.watcher = DeploymentWatcher(self.registry_channel, s.registry_token, self.state,
                                         self.batcher, self.auth.revoke, f"gateway/{s.gateway_id}",
                                         s.model_repository)
        self.router = Router()
        self.frames = FrameProcessor(self.state, self.router, self.batcher, self.spool,
                                     self.recorder, s.max_frame_bytes,
                                     decode_inline_max_pixels=s.decode_inline_max_pixels)
        self.contacts = DeviceContacts()
        previous = read_status(self.spool.directory)
        if previous is not None:
            restored = self.contacts.restore(previous)
            log.info("device contacts taken over from the last status file",
                     extra={"devices": restored, "written_at": previous.written_at})
        self.sampler = (GatewaySampler(self.features_channel, s.sample_interval_s,
                                       s.samples_kept, started_at=time.time(),
                                       pending=self.spool.directory / PENDING_FILE)
                        if s.sample_interval_s else None)
        self.status = StatusWriter(self.spool.directory, lambda stopped: gateway_status(
            s.gateway_id, self.spool, self.frames.unrecorded, self.forwarder,
            served_versions(self.state, self.host), s.status_interval_s, stopped,
            self.contacts.records(), self.contacts.frames_received()), s.status_interval_s,
            listener=self.sampler.offer if self.sampler else None)
        models = DeviceModels(self.state, ModelFiles(self.state, s.model_repository), self.router,
                              twin=self._twin_check())
        self.service = EdgeGatewayService(self.auth, self.state, self.frames, s.gateway_id,
                                          s.max_frame_bytes, models,
                                          DeviceLimits(s.max_streams_per_device,
                                                       s.max_fps_per_device,
                                                       contacts=self.contacts))
        edge_gateway_service_pb2_grpc.add_EdgeGatewayServiceServicer_to_server(self.service, server)

    def _twin_check(self) -> TwinCheck | None:
        """Whether robots that ask may run a version's quantized twin: once the embedded host
        runs it itself, or (another host) once the gateway's judge found it agrees; never
        with EDGELOOP_MODEL_QUANTIZED=false."""
        if self.twins is not None:
            return self.twins
        return getattr(self.host, "runs_quantized_twin", None)

    async def start(self) -> None:
        """Start recording, forwarding (replaying any backlog) and following the registry."""
        self.recorder.start()
        self.forwarder.start()
        self.watcher.start()
        self.status.start()
        if self.sampler:
            self.sampler.start()

    async def stop(self) -> None:
        """Finish in-flight frames, commit them, try to flush, and close everything."""
        await self.service.drain()
        await self.recorder.stop(STOP_RECORD_S)
        await self.forwarder.stop()
        flushed = await self.forwarder.flush(STOP_FLUSH_S)
        log.info("gateway stopped", extra={"spool_empty": flushed,
                                           "backlog_bytes": self.spool.backlog_bytes})
        await self.status.stop()  # its final record is the sampler's last sample
        if self.sampler:
            await self.sampler.stop()
        await self.watcher.stop()
        if self.twins is not None:
            await self.twins.close()
        await self.batcher.close()
        self.frames.close()
        await asyncio.gather(self.registry_channel.close(), self.features_channel.close())


def build_app(settings: Settings) -> App:
    """Build the service from its settings."""
    return App(settings)
