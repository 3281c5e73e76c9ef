"""The registry service: its life cycle (pool, MLflow, catalog, TF Serving reloads)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from edgeloop.contracts.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from edgeloop.platform import ServiceApp
from edgeloop.registry import hostconfig
from edgeloop.registry.auth import Tokens
from edgeloop.registry.catalog import Catalog
from edgeloop.registry.database import open_pool
from edgeloop.registry.mlflow_registry import ModelRegistry
from edgeloop.registry.models import Models
from edgeloop.registry.operators import ActiveOperators
from edgeloop.registry.promotion import Aliases
from edgeloop.registry.service import RegistryService
from edgeloop.registry.settings import Settings
from edgeloop.registry.tfserving import ServingReloader
from grpc import aio

SERVICE = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"]
log = logging.getLogger(__name__)


class App(ServiceApp):
    """The registry service."""

    name = "registry"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servicer = RegistryService(Tokens(settings.admin_token, settings.read_token,
                                              services=settings.service_token_map()),
                                        settings.promotion_margin_mm, settings.device_auth_ttl_s)
        self.catalog: Catalog | None = None
        self.models: Models | None = None
        self.reloader: ServingReloader | None = None
        self._pool = None

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        """Open the pool (migrations applied), load the state, start refreshes and reloads."""
        settings = self.settings
        repository = Path(settings.model_repository)
        repository.mkdir(parents=True, exist_ok=True)
        self._pool = await open_pool(settings.database_url)
        registry = ModelRegistry(settings.mlflow_tracking_uri)
        if settings.tfserving_addr:
            self.reloader = ServingReloader(settings.tfserving_addr,
                                            settings.tfserving_load_timeout_s,
                                            previous=hostconfig.read(repository))
            self.reloader.start()
        self.catalog = Catalog(self._pool, registry, repository, settings.tfserving_model_base,
                               self.reloader)
        await self.catalog.refresh()
        self.catalog.start(settings.refresh_interval_s)
        self.models = Models(self._pool, registry, repository, settings.tensorflow_idle_s)
        self.servicer.attach(self.catalog, self.models, Aliases(self._pool, registry),
                             ActiveOperators(self._pool, settings.operator_auth_ttl_s))

    async def stop(self) -> None:
        """Stop background work and close the pool."""
        if self.catalog:
            await self.catalog.stop()
        if self.models:
            await self.models.close()
        if self.reloader:
            await self.reloader.stop()
        if self._pool is not None:
            await self._pool.close()


def build_app(settings: Settings) -> App:
    """Build the service from its settings."""
    return App(settings)
