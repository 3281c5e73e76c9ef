"""The FeatureStoreService RPCs: requests in, modules called, responses out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol

from edgeloop.contracts.features.v1 import dead_letter_pb2, feature_store_service_pb2_grpc
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.features import dead_letters
from edgeloop.features.drift.events import DriftEvents
from edgeloop.features.drift.messages import event_message, state_message
from edgeloop.features.drift.monitor import DriftMonitor
from edgeloop.features.gateway_samples import list_gateway_samples, record_gateway_samples
from edgeloop.features.ingest import Ingestor
from edgeloop.features.queries import list_observations
from edgeloop.features.traffic import summarize_traffic
from edgeloop.features.window_stats import window_stats
from edgeloop.platform.errors import FailedPrecondition
from edgeloop.platform.logs import log_context
from edgeloop.platform.objectstore import ObjectStore
from grpc import aio
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)


class Resources(Protocol):
    """What the RPCs use, opened by the app at start (before any call is let in)."""

    ingestor: Ingestor
    pool: AsyncConnectionPool
    store: ObjectStore
    timescale: bool
    monitor: DriftMonitor | None


SERVICE = pb.DESCRIPTOR.services_by_name["FeatureStoreService"]
DEFAULT_EVENT_LIMIT = 100


class FeatureStoreService(feature_store_service_pb2_grpc.FeatureStoreServiceServicer):
    """Ingest, dataset queries, window statistics, drift events and live rule states."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    async def Ingest(self, request_iterator: AsyncIterator[pb.IngestRequest],  # noqa: N802
                     context: aio.ServicerContext) -> pb.IngestResponse:
        """Store every batch of the stream; the response counts the whole call."""
        batches = (request.observations async for request in request_iterator)
        total = await self.resources.ingestor.ingest_stream(batches)
        log.info("ingest call done", extra={"stored": total.stored, "duplicates": total.duplicates,
                                            "rejected": len(total.rejected)})
        return total.to_proto()

    async def ListObservations(self, request: pb.ListObservationsRequest,  # noqa: N802
                               context: aio.ServicerContext,
                               ) -> AsyncIterator[pb.ListObservationsResponse]:
        """Stream the matching observations in pages, oldest first."""
        async for page in list_observations(self.resources.pool, self.resources.store, request):
            yield page

    async def GetWindowStats(self, request: pb.GetWindowStatsRequest,  # noqa: N802
                             context: aio.ServicerContext) -> pb.GetWindowStatsResponse:
        """Summarise one deployment's window."""
        with log_context(deployment=request.deployment):
            return await window_stats(self.resources.pool, request, self.resources.timescale,
                                      datetime.now(UTC))

    async def ListDriftEvents(self, request: pb.ListDriftEventsRequest,  # noqa: N802
                              context: aio.ServicerContext) -> pb.ListDriftEventsResponse:
        """Drift events, newest first."""
        events = await DriftEvents(self.resources.pool).list(
            request.deployment, request.open_only, request.limit or DEFAULT_EVENT_LIMIT)
        return pb.ListDriftEventsResponse(events=[event_message(e) for e in events])

    async def ListRuleStates(self, request: pb.ListRuleStatesRequest,  # noqa: N802
                             context: aio.ServicerContext) -> pb.ListRuleStatesResponse:
        """Every rule's live value per active deployment, from the monitor's last pass."""
        monitor = self.resources.monitor
        if monitor is None:
            raise FailedPrecondition("the drift monitor is off: set EDGELOOP_REGISTRY_ADDR and "
                                     "EDGELOOP_REGISTRY_TOKEN for the features service")
        return pb.ListRuleStatesResponse(
            states=[state_message(t) for t in monitor.states(request.deployment)])

    async def SummarizeTraffic(self, request: pb.SummarizeTrafficRequest,  # noqa: N802
                               context: aio.ServicerContext) -> pb.SummarizeTrafficResponse:
        """A window's frames and error per device and per arm, counted in the database."""
        return await summarize_traffic(self.resources.pool, request, datetime.now(UTC))

    async def RecordGatewaySamples(self, request: pb.RecordGatewaySamplesRequest,  # noqa: N802
                                   context: aio.ServicerContext,
                                   ) -> pb.RecordGatewaySamplesResponse:
        """Store gateways' samples of their spool, recording and robots (idempotent)."""
        return await record_gateway_samples(self.resources.pool, request)

    async def ListGatewaySamples(self, request: pb.ListGatewaySamplesRequest,  # noqa: N802
                                 context: aio.ServicerContext,
                                 ) -> pb.ListGatewaySamplesResponse:
        """A window of gateways' samples, by gateway and time."""
        return await list_gateway_samples(self.resources.pool, request, datetime.now(UTC))

    async def ListDeadLetters(self, request: dead_letter_pb2.ListDeadLettersRequest,  # noqa: N802
                              context: aio.ServicerContext,
                              ) -> dead_letter_pb2.ListDeadLettersResponse:
        """Refused observations kept in the dead-letter store, newest first."""
        return await dead_letters.list_dead_letters(self.resources.pool, request)

    async def ReplayDeadLetters(self, request: dead_letter_pb2.ReplayDeadLettersRequest,  # noqa: N802
                                context: aio.ServicerContext,
                                ) -> dead_letter_pb2.ReplayDeadLettersResponse:
        """Ingest dead letters again; the stored ones leave the store."""
        reply = await dead_letters.replay(self.resources.pool, self.resources.ingestor, request)
        log.info("dead letters replayed", extra={
            "stored": reply.stored, "duplicates": reply.duplicates,
            "still_refused": reply.still_refused})
        return reply
