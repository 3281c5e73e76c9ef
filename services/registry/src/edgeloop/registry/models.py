"""Model versions: registration from a run (with publishing), listing, lookup.

MLflow keeps versions, tags and aliases; the ``model_versions`` table keeps what
MLflow has no place for: the metrics and holdout evaluation given at registration and
where the version was published (and whether its TFLite conversion worked).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from edgeloop.contracts.registry.v1 import deployment_pb2, model_pb2, registry_service_pb2
from edgeloop.platform import log_context
from edgeloop.platform.errors import EdgeloopError, FailedPrecondition, InvalidArgument, NotFound
from edgeloop.platform.tensorflow_process import FunctionByName, TensorFlowProcess
from edgeloop.registry import history, publishing, signatures
from edgeloop.registry.mlflow_registry import LoggedModel, ModelRegistry
from edgeloop.registry.selectors import ModelState, check_model_name
from google.protobuf import json_format
from mlflow.entities.model_registry import ModelVersion as MlflowVersion
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)
TAG_KEY = re.compile(r"^[A-Za-z0-9_.\-/]{1,250}$")
DEFAULT_ARTIFACT_PATH = "model"
SAVED_MODELS = "edgeloop.registry.saved_models"  # TensorFlow's part, run in the child
CONVERT_TFLITE = FunctionByName(SAVED_MODELS, "convert_tflite")


def check_request(request: registry_service_pb2.RegisterModelVersionRequest) -> None:
    """INVALID_ARGUMENT naming the first bad field of a registration."""
    check_model_name(request.model_name)
    if not request.run_id or not re.match(r"^[A-Za-z0-9_-]{1,64}$", request.run_id):
        raise InvalidArgument("run_id", "an MLflow run id is required")
    for key, value in request.tags.items():
        if not TAG_KEY.match(key) or len(value) > 5000:
            raise InvalidArgument("tags", f"bad tag {key!r} (key 1-250 of A-Z a-z 0-9 _ . - /, "
                                          "value at most 5000 characters)")
    for key, value in request.metrics.items():
        if not TAG_KEY.match(key) or not math.isfinite(value):
            raise InvalidArgument("metrics", f"bad metric {key!r}={value}")
    if request.HasField("evaluation") and not math.isfinite(request.evaluation.candidate_mae_mm):
        raise InvalidArgument("evaluation.candidate_mae_mm", "must be a finite number")


def _mlflow_tags(request: registry_service_pb2.RegisterModelVersionRequest) -> dict[str, str]:
    tags = dict(request.tags)
    tags.update({f"metric.{k}": repr(v) for k, v in request.metrics.items()})
    if request.HasField("evaluation"):
        for key, value in json_format.MessageToDict(request.evaluation,
                                                    preserving_proto_field_name=True).items():
            tags[f"evaluation.{key}"] = str(value)
    return tags


class Models:
    """Registration, publishing and lookup of model versions.

    The signature check before a version is registered or published reads the SavedModel's
    protobuf (:mod:`~edgeloop.registry.signatures`); the TFLite conversion after it runs
    TensorFlow in a child process that ends ``tensorflow_idle_s`` after its last call
    (:mod:`~edgeloop.registry.saved_models`); :meth:`close` ends it at once.
    """

    def __init__(self, pool: AsyncConnectionPool, registry: ModelRegistry,
                 repository: Path, tensorflow_idle_s: float = 120.0) -> None:
        self.pool = pool
        self.registry = registry
        self.repository = repository
        self.tensorflow = TensorFlowProcess(imports=(SAVED_MODELS,),
                                            idle_s=tensorflow_idle_s)
        self._conversions: set[asyncio.Task[None]] = set()
        self._request_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def register(self, actor: str, request: registry_service_pb2.RegisterModelVersionRequest
                       ) -> tuple[model_pb2.ModelVersion, bool]:
        """Register the run's model as the next version, publish its SavedModel, record it.

        Returns the version and whether it was registered before under the request's
        ``request_id`` (a retry): then nothing new is registered.
        """
        check_request(request)
        if not request.request_id:
            return await self._register(actor, request), False
        key = (request.model_name, request.request_id)
        async with self._request_locks.setdefault(key, asyncio.Lock()):
            earlier = await self._version_of_request(*key)
            if earlier:
                log.info("registration retried: returning the earlier version",
                         extra={"request_id": request.request_id, "version": earlier})
                return await self.get(request.model_name, earlier), True
            return await self._register(actor, request), False

    async def _version_of_request(self, model: str, request_id: str) -> str:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT version FROM model_versions WHERE model_name = %s "
                                        "AND request_id = %s", (model, request_id))
            row = await cursor.fetchone()
            return row["version"] if row else ""

    async def _register(self, actor: str, request: registry_service_pb2.RegisterModelVersionRequest
                        ) -> model_pb2.ModelVersion:
        artifact_path = request.artifact_path or DEFAULT_ARTIFACT_PATH
        with tempfile.TemporaryDirectory(prefix="edgeloop-register-") as workdir:
            logged, saved_model = await asyncio.to_thread(
                self._fetch, request.run_id, artifact_path, Path(workdir))
            version, published, metrics = await asyncio.to_thread(
                self._create_and_publish, request, logged, saved_model)
        number = str(version.version)
        with log_context(model=request.model_name, version=number):
            await self._record(actor, request, number, version.source, published, metrics)
            log.info("registered model version", extra={"run_id": request.run_id,
                                                        "source": logged.source})
            self._convert_later(request.model_name, number, published)
        return await self.get(request.model_name, number)

    def _fetch(self, run_id: str, artifact_path: str, workdir: Path) -> tuple[LoggedModel, Path]:
        """Find and download the model and the SavedModel in it (signature checked)."""
        logged = self.registry.locate(run_id, artifact_path)
        return logged, self._download(logged, workdir)

    def _download(self, logged: LoggedModel, workdir: Path) -> Path:
        """Download a logged model; the SavedModel in it, INVALID_ARGUMENT unless it has the
        serving signature."""
        saved_model = publishing.find_saved_model(self.registry.download(logged, workdir))
        signatures.check_signature(saved_model)
        return saved_model

    def _create_and_publish(self, request: registry_service_pb2.RegisterModelVersionRequest,
                            logged: LoggedModel, saved_model: Path
                            ) -> tuple[MlflowVersion, Path, dict[str, float]]:
        metrics = {**self.registry.run_metrics(request.run_id), **request.metrics}
        version = self.registry.create_version(request.model_name, logged, _mlflow_tags(request))
        published = publishing.publish_saved_model(saved_model, self.repository,
                                                   request.model_name, str(version.version))
        return version, published, metrics

    async def _record(self, actor: str, request: registry_service_pb2.RegisterModelVersionRequest,
                      version: str, source: str, published: Path,
                      metrics: dict[str, float], action: str = "register") -> None:
        evaluation = (json.dumps(json_format.MessageToDict(request.evaluation))
                      if request.HasField("evaluation") else None)
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO model_versions (model_name, version, run_id, source, metrics, "
                "evaluation, published_path, request_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (model_name, version) "
                "DO UPDATE SET published_path = EXCLUDED.published_path",
                (request.model_name, version, request.run_id, source,
                 json.dumps(metrics), evaluation, str(published), request.request_id))
            await history.record(conn, actor, f"model/{request.model_name}", action,
                                 {"version": version, "run_id": request.run_id,
                                  "source": source, "published_path": str(published),
                                  "tags": dict(request.tags), "metrics": metrics})

    def _convert_later(self, model: str, version: str, published: Path) -> None:
        """Convert to TFLite in the background: it can take long, and failure is not fatal."""
        task = asyncio.create_task(self.convert_tflite(model, version, published),
                                   name=f"tflite-{model}-{version}")
        self._conversions.add(task)
        task.add_done_callback(self._conversions.discard)

    async def convert_tflite(self, model: str, version: str, published: Path) -> None:
        """Write ``<model>/<version>.tflite`` (and its quantized twin); record the path or
        the error."""
        target = publishing.tflite_path(self.repository, model, version)
        quantized = publishing.quantized_tflite_path(self.repository, model, version)
        path, error = "", ""
        with log_context(model=model, version=version):
            try:
                path = str(await self.tensorflow.run(CONVERT_TFLITE, published, target,
                                                     quantized))
                log.info("converted to TFLite", extra={"path": path,
                                                       "quantized": quantized.exists()})
            except Exception as exc:  # any converter failure: the SavedModel still serves
                error = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning("TFLite conversion failed: %s", error)
            async with self.pool.connection() as conn:
                await conn.execute("UPDATE model_versions SET tflite_path = %s, tflite_error = %s "
                                   "WHERE model_name = %s AND version = %s",
                                   (path, error, model, version))
                await history.record(conn, "registry", f"model/{model}",
                                     "tflite" if path else "tflite_failed",
                                     {"version": version, "path": path, "error": error})

    async def wait_conversions(self) -> None:
        """Wait for background TFLite conversions (shutdown, tests)."""
        if self._conversions:
            await asyncio.gather(*list(self._conversions), return_exceptions=True)

    async def close(self) -> None:
        """Wait for the conversions, then end the TensorFlow child process."""
        await self.wait_conversions()
        await self.tensorflow.close()

    async def ensure_published(self, actor: str, model: str, version: str) -> None:
        """Publish a version registered outside the registry (e.g. in the MLflow UI).

        Called before an alias moves to ``version``, so an alias set through the registry
        never names a version the model hosts cannot load; FAILED_PRECONDITION if it
        cannot be published.
        """
        if (publishing.version_dir(self.repository, model, version) / "saved_model.pb").exists():
            return
        found = await asyncio.to_thread(self.registry.version, model, version)
        with tempfile.TemporaryDirectory(prefix="edgeloop-publish-") as workdir:
            try:
                published = await self._publish_existing(found, Path(workdir))
            except EdgeloopError as exc:
                raise FailedPrecondition(f"version: version {version} of {model!r} cannot be "
                                         f"published: {exc.message}") from exc
        metrics = (await asyncio.to_thread(self.registry.run_metrics, found.run_id)
                   if found.run_id else {})
        request = registry_service_pb2.RegisterModelVersionRequest(
            model_name=model, run_id=found.run_id or "", metrics=metrics)
        with log_context(model=model, version=version):
            await self._record(actor, request, version, found.source or "", published, metrics,
                               action="publish")
            log.info("published a version registered outside the registry")
            self._convert_later(model, version, published)

    async def _publish_existing(self, found: MlflowVersion, workdir: Path) -> Path:
        logged = await asyncio.to_thread(self.registry.locate_version, found)
        saved_model = await asyncio.to_thread(self._download, logged, workdir)
        return await asyncio.to_thread(publishing.publish_saved_model, saved_model,
                                       self.repository, found.name, str(found.version))

    async def list_versions(self, model: str) -> list[model_pb2.ModelVersion]:
        """Every version of ``model``, newest first, with metrics, lineage and aliases."""
        check_model_name(model)
        versions = await asyncio.to_thread(self.registry.versions, model)
        aliases = await asyncio.to_thread(self.registry.aliases, model)
        rows = await self._rows(model)
        return [to_proto(v, aliases, rows.get(str(v.version))) for v in versions]

    async def get(self, model: str, version: str) -> model_pb2.ModelVersion:
        """One version by number."""
        check_model_name(model)
        found = await asyncio.to_thread(self.registry.version, model, version)
        aliases = await asyncio.to_thread(self.registry.aliases, model)
        rows = await self._rows(model, version)
        return to_proto(found, aliases, rows.get(version))

    async def select(self, model: str, selector: deployment_pb2.VersionSelector) -> str:
        """The version number ``selector`` names now; NOT_FOUND when none."""
        check_model_name(model)
        state: ModelState = await asyncio.to_thread(self.registry.state, model)
        version = state.resolve(selector)
        if not version:
            raise NotFound(f"selector: model {model!r} has no version matching it")
        return version

    async def evaluation(self, model: str, version: str) -> model_pb2.HoldoutEvaluation | None:
        """The holdout evaluation given when ``version`` was registered, if any."""
        row = (await self._rows(model, version)).get(version)
        if not row or row["evaluation"] is None:
            return None
        return json_format.ParseDict(row["evaluation"], model_pb2.HoldoutEvaluation())

    async def _rows(self, model: str, version: str | None = None) -> dict[str, dict[str, Any]]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT version, metrics, evaluation, published_path FROM model_versions "
                "WHERE model_name = %s AND (%s::text IS NULL OR version = %s)",
                (model, version, version))
            return {row["version"]: row for row in await cursor.fetchall()}


def to_proto(version: MlflowVersion, aliases: dict[str, int],
             row: dict[str, Any] | None) -> model_pb2.ModelVersion:
    """An MLflow version (plus the registry's row) as the ModelVersion message."""
    message = model_pb2.ModelVersion(
        model_name=version.name, version=str(version.version), run_id=version.run_id or "",
        source=version.source or "",
        aliases=sorted(a for a, v in aliases.items() if str(v) == str(version.version)),
        tags={k: v for k, v in (version.tags or {}).items()
              if not k.startswith(("metric.", "evaluation.", "mlflow."))})
    if version.creation_timestamp:
        message.created_at.FromMilliseconds(int(version.creation_timestamp))
    if row is not None:
        message.metrics.update(row["metrics"] or {})
        message.published_path = row["published_path"]
        if row["evaluation"] is not None:
            json_format.ParseDict(row["evaluation"], message.evaluation)
    return message
