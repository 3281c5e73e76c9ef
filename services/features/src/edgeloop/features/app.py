"""The features service: its gRPC servicers and life cycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc
from edgeloop.contracts.trainer.v1 import trainer_service_pb2_grpc
from edgeloop.features.database import connect_once, open_pool
from edgeloop.features.drift.deployments import DeploymentSource
from edgeloop.features.drift.monitor import DriftMonitor
from edgeloop.features.drift.references import ReferenceCache
from edgeloop.features.drift.retraining import Retrainer
from edgeloop.features.drift.rules import RulesError, load_rules
from edgeloop.features.ingest import Ingestor
from edgeloop.features.retention import Retention
from edgeloop.features.schema import Policies, ensure_schema
from edgeloop.features.servicer import SERVICE, FeatureStoreService
from edgeloop.features.settings import Settings
from edgeloop.platform import ConfigError, ServiceApp, Unavailable, open_channel
from edgeloop.platform.objectstore import ObjectStore, open_object_store
from grpc import aio
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)


class App(ServiceApp):
    """The features service: schema at start, then ingest and queries on a shared pool."""

    name = "features"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Set by start(); the server refuses calls until start() has returned.
        self.pool: AsyncConnectionPool
        self.ingestor: Ingestor
        self.store: ObjectStore
        self.timescale = False
        self.monitor: DriftMonitor | None = None
        self._channels: list[aio.Channel] = []
        self._monitor_task: asyncio.Task[None] | None = None
        self.retention: Retention | None = None
        """Deletes rows and images past ``EDGELOOP_RETENTION_DAYS`` (when set)."""
        self._retention_task: asyncio.Task[None] | None = None
        self.servicer = FeatureStoreService(self)

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        feature_store_service_pb2_grpc.add_FeatureStoreServiceServicer_to_server(self.servicer,
                                                                                 server)

    async def start(self) -> None:
        s = self.settings
        try:
            self.store = open_object_store(s.object_store_dir, s.s3_endpoint, s.s3_access_key,
                                           s.s3_secret_key, s.s3_bucket, s.s3_secure)
        except Unavailable as exc:
            # Stop at start with the variable named, rather than fail every call later.
            raise ConfigError(f"EDGELOOP_S3_ENDPOINT: {exc.message}") from exc
        conn = await connect_once(s.database_url, s.db_connect_timeout_s)
        async with conn:
            self.timescale = await ensure_schema(conn, Policies(s.retention_days,
                                                                s.compress_after_days))
        self.pool = await open_pool(s.database_url, s.db_pool_size)
        self.ingestor = Ingestor(self.pool, self.store, s.ingest_workers)
        if s.retention_days:  # TimescaleDB's policy drops its rows; plain ones go here
            self.retention = Retention(self.store, s.retention_days,
                                       rows=None if self.timescale else self.pool)
            self._retention_task = asyncio.create_task(self.retention.run(), name="retention")
        self._start_monitor()
        log.info("features ready", extra={"object_store": self.store.describe(),
                                          "timescaledb": self.timescale,
                                          "workers": self.ingestor.workers})

    def _start_monitor(self) -> None:
        s = self.settings
        if not s.registry_addr:
            log.info("drift monitor off: EDGELOOP_REGISTRY_ADDR is not set")
            return
        try:
            rules = load_rules(s.drift_rules or None)
        except RulesError as exc:
            raise ConfigError(f"EDGELOOP_DRIFT_RULES: {exc}") from exc
        registry_channel = open_channel(s.registry_addr, tls=s.client_tls())
        self._channels.append(registry_channel)
        registry = registry_service_pb2_grpc.RegistryServiceStub(registry_channel)
        references = ReferenceCache(registry, s.registry_token, self.store)
        retrainer = None
        if s.trainer_addr:
            trainer_channel = open_channel(s.trainer_addr, tls=s.client_tls())
            self._channels.append(trainer_channel)
            retrainer = Retrainer(self.pool,
                                  trainer_service_pb2_grpc.TrainerServiceStub(trainer_channel),
                                  references, s.drift_retrain_min_samples,
                                  s.drift_retrain_min_runs, s.drift_retrain_warm_start,
                                  s.drift_retrain_trials, s.drift_retrain_epochs,
                                  s.drift_retrain_max_samples,
                                  s.drift_retrain_consolidate_factor,
                                  s.drift_retrain_shortfall_ratio)
        self.monitor = DriftMonitor(self.pool, rules, DeploymentSource(registry, s.registry_token),
                                    references, retrainer)
        self._monitor_task = asyncio.create_task(self.monitor.run(), name="drift-monitor")
        log.info("drift monitor on",
                 extra={"rules": len(rules.rules), "retraining": bool(retrainer)})

    async def stop(self) -> None:
        for task in (self._monitor_task, self._retention_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for channel in self._channels:
            await channel.close()
        if hasattr(self, "ingestor"):
            self.ingestor.close()
        if hasattr(self, "pool"):
            await self.pool.close()


def build_app(settings: Settings) -> App:
    """Build the service from its settings."""
    return App(settings)
