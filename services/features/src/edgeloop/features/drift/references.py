"""The training reference of the model version a deployment serves.

A version's lineage tags name its dataset snapshot (``dataset_snapshot``); the trainer
saved ``trainer/sweeps/<snapshot>/reference.json`` beside it. The version's
``holdout_mae_mm`` metric (set at registration) wins over the file's copy, and each world's
group gets the version's holdout MAE on that world and the drive runs behind it
(``holdout_mae_mm/world/<w>``, ``holdout_runs/world/<w>``, see ``edgeloop.platform.worlds``):
the concept rules judge a frame against its world's error level.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc
from edgeloop.contracts.registry.v1 import (
    deployment_pb2,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from edgeloop.platform import DEFAULT_DEADLINE_S, NotFound, bearer
from edgeloop.platform.objectstore import ObjectStore
from edgeloop.platform.worlds import CANDIDATE_MAE, HOLDOUT_RUNS, metric_name
from grpc import aio

log = logging.getLogger(__name__)


class ReferenceCache:
    """Loads and remembers references per (model, version); versions never change."""

    def __init__(self, registry: registry_service_pb2_grpc.RegistryServiceStub, token: str,
                 store: ObjectStore) -> None:
        self.registry = registry
        self.token = token
        self.store = store
        self._cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    async def get(self, model_name: str, version: str) -> dict[str, Any] | None:
        """The reference of ``model_name`` ``version``; None without a model or a reference."""
        if not model_name or not version:
            return None
        key = (model_name, version)
        if key not in self._cache:
            self._cache[key] = await self._load(model_name, version)
        return self._cache[key]

    def snapshot_of(self, model_name: str, version: str) -> str:
        """The dataset snapshot the version was trained on ('' if unknown)."""
        reference = self._cache.get((model_name, version)) or {}
        return reference.get("snapshot_id", "")

    async def _load(self, model_name: str, version: str) -> dict[str, Any] | None:
        request = registry_service_pb2.GetModelVersionRequest(
            model_name=model_name, selector=deployment_pb2.VersionSelector(version=version))
        try:
            reply = await self.registry.GetModelVersion(request, timeout=DEFAULT_DEADLINE_S,
                                                        metadata=bearer(self.token))
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        snapshot = reply.version.tags.get("dataset_snapshot", "")
        if not snapshot:
            log.warning("model version has no dataset snapshot tag; rules needing a "
                        "reference stay unevaluated",
                        extra={"model": model_name, "version": version})
            return None
        try:
            raw = await asyncio.to_thread(self.store.get,
                                          f"trainer/sweeps/{snapshot}/reference.json")
        except NotFound:
            log.warning("reference.json missing", extra={"snapshot": snapshot})
            return None
        reference = json.loads(raw)
        reference["snapshot_id"] = snapshot
        metrics = reply.version.metrics
        if metrics.get("holdout_mae_mm"):
            reference["holdout_mae_mm"] = metrics["holdout_mae_mm"]
        for world, group in (reference.get("groups") or {}).items():
            name = metric_name(world)
            if metrics.get(CANDIDATE_MAE + name):
                group["holdout_mae_mm"] = metrics[CANDIDATE_MAE + name]
                group["holdout_runs"] = metrics.get(HOLDOUT_RUNS + name)
        return reference
