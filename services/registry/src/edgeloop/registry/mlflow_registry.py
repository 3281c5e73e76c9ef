"""The MLflow model registry (MLflow 3: aliases, not stages), as blocking calls.

Callers run these in a thread (``asyncio.to_thread``): MlflowClient does blocking I/O.
MLflow errors become edgeloop errors here, so the gRPC boundary sees clear codes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.artifacts
from edgeloop.platform.errors import EdgeloopError, InvalidArgument, NotFound, Unavailable
from edgeloop.registry.selectors import ModelState
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion as MlflowVersion
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

ARTIFACT_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_INVALID = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}


@contextlib.contextmanager
def mlflow_errors(what: str, field: str = "model_name") -> Iterator[None]:
    """Translate MLflow's exceptions raised inside into edgeloop errors about ``what``."""
    try:
        yield
    except EdgeloopError:
        raise
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            raise NotFound(f"{field}: {what}: {exc.message}") from exc
        if exc.error_code in _INVALID:
            raise InvalidArgument(field, f"{what}: {exc.message}") from exc
        raise Unavailable(f"MLflow: {what}: {exc.message}") from exc
    except OSError as exc:
        raise Unavailable(f"MLflow: {what}: {exc}") from exc


@dataclass(frozen=True)
class LoggedModel:
    """Where a run's logged model lives: the source to register and its artifacts."""

    run_id: str
    source: str
    artifact_uri: str
    model_id: str | None


class ModelRegistry:
    """MLflow tracking + registry at one URI."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        # MLflow 3 resolves a logged model (models:/m-...) at registration through the
        # process-wide tracking URI, not the client's; without this a registry process
        # whose MLflow is given only to the client cannot find the trainer's models.
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)

    def locate(self, run_id: str, artifact_path: str) -> LoggedModel:
        """The model a run logged at ``artifact_path``.

        MLflow 3 stores a model logged with ``log_model(name=...)`` as a logged model
        (``models:/m-...``) outside the run's artifacts; older runs keep it under the
        run's artifacts. Both are found here, as ``mlflow.register_model`` does.
        """
        if not ARTIFACT_PATH.match(artifact_path) or ".." in artifact_path.split("/"):
            raise InvalidArgument("artifact_path", f"{artifact_path!r} is not an artifact path")
        with mlflow_errors(f"run {run_id!r}", "run_id"):
            run = self.client.get_run(run_id)
            found = self._logged_model(run, artifact_path)
            if found is not None:
                return found
            # Before MLflow 3 (or log_model(artifact_path=...)), the model is a run artifact.
            run_root = run.info.artifact_uri.rstrip("/")
            listed = get_artifact_repository(run_root).list_artifacts(artifact_path)
            if any(item.path.endswith("MLmodel") for item in listed):
                return LoggedModel(run_id, f"runs:/{run_id}/{artifact_path}",
                                   f"{run_root}/{artifact_path}", None)
        raise NotFound(f"run_id: run {run_id!r} logged no model named {artifact_path!r}")

    def _logged_model(self, run: Run, artifact_path: str) -> LoggedModel | None:
        found = []
        page_token = None
        while True:
            page = self.client.search_logged_models(
                experiment_ids=[run.info.experiment_id],
                filter_string=f"name = '{artifact_path}'", page_token=page_token)
            found.extend(m for m in page if m.source_run_id == run.info.run_id)
            page_token = page.token
            if not page_token:
                break
        if not found:
            return None
        steps = {o.model_id: o.step for o in (run.outputs.model_outputs if run.outputs else [])}
        # Several models of that name in one run: the one logged at the last step wins.
        best = max(found, key=lambda m: (steps.get(m.model_id, -1), m.creation_timestamp or 0))
        return LoggedModel(run.info.run_id, f"models:/{best.model_id}", best.artifact_location,
                           best.model_id)

    def locate_version(self, version: MlflowVersion) -> LoggedModel:
        """Where a registered version's model files are, from its ``source``."""
        source = version.source or ""
        with mlflow_errors(f"source {source!r} of version {version.version}", "version"):
            if source.startswith("models:/m-"):
                model_id = source.removeprefix("models:/").split("/")[0]
                logged = self.client.get_logged_model(model_id)
                return LoggedModel(version.run_id or "", source, logged.artifact_location,
                                   model_id)
            if source.startswith("runs:/"):
                run_id, _, path = source.removeprefix("runs:/").partition("/")
                return self.locate(run_id, path or "model")
        return LoggedModel(version.run_id or "", source, source, None)

    def download(self, model: LoggedModel, dst: Path) -> Path:
        """Download the MLflow model directory into ``dst``; return its local path."""
        with mlflow_errors(f"download of {model.source}", "run_id"):
            return Path(mlflow.artifacts.download_artifacts(
                artifact_uri=model.artifact_uri, dst_path=str(dst), tracking_uri=self.tracking_uri))

    def create_version(self, name: str, model: LoggedModel, tags: dict[str, str]) -> MlflowVersion:
        """Register ``model`` as the next version of ``name`` (creating the model if missing)."""
        with mlflow_errors(f"registering {model.source} as {name!r}"):
            try:
                self.client.create_registered_model(name)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                    raise
            return self.client.create_model_version(
                name, model.source, run_id=model.run_id, tags=tags, model_id=model.model_id)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric of a run."""
        with mlflow_errors(f"run {run_id!r}", "run_id"):
            return dict(self.client.get_run(run_id).data.metrics)

    def state(self, name: str) -> ModelState:
        """Versions and aliases of ``name``; empty when the model is not registered."""
        try:
            with mlflow_errors(f"model {name!r}"):
                aliases = self.aliases(name)
                versions = frozenset(int(v.version) for v in self.versions(name))
        except NotFound:
            return ModelState()
        return ModelState(versions, aliases)

    def aliases(self, name: str) -> dict[str, int]:
        """alias → version of ``name``."""
        with mlflow_errors(f"model {name!r}"):
            model = self.client.get_registered_model(name)
            return {alias: int(version) for alias, version in model.aliases.items()}

    def versions(self, name: str) -> list[MlflowVersion]:
        """Every version of ``name``, newest first."""
        found: list[MlflowVersion] = []
        page_token = None
        with mlflow_errors(f"model {name!r}"):
            self.client.get_registered_model(name)  # NOT_FOUND for an unknown model
            while True:
                page = self.client.search_model_versions(f"name = '{name}'", page_token=page_token)
                found.extend(page)
                page_token = page.token
                if not page_token:
                    break
        return sorted(found, key=lambda v: int(v.version), reverse=True)

    def version(self, name: str, version: str) -> MlflowVersion:
        """One version of ``name``."""
        with mlflow_errors(f"version {version} of model {name!r}", "version"):
            return self.client.get_model_version(name, version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of ``name`` at ``version``."""
        with mlflow_errors(f"alias {alias!r} of model {name!r}", "alias"):
            self.client.set_registered_model_alias(name, alias, version)

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Set tags on a version."""
        with mlflow_errors(f"tags of version {version} of {name!r}", "tags"):
            for key, value in tags.items():
                self.client.set_model_version_tag(name, version, key, value)
