"""Fixtures: a registry served in-process on loopback, with real PostgreSQL and MLflow.

PostgreSQL is the private test cluster (``database_url``); MLflow is a real SQLite
store in a temporary folder shared by the session, where runs are logged the way the
trainer logs them (``mlflow.pyfunc.log_model(name="model", artifacts={"saved_model": ...})``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc
from edgeloop.platform import bearer, serve
from edgeloop.registry.app import App
from edgeloop.registry.settings import Settings
from grpc import aio

ADMIN = "admin-token-for-tests-0123456789"
READ = "read-token-for-tests-0123456789"


@dataclass
class MlflowStore:
    """A real MLflow tracking/registry store and two logged runs with models."""

    uri: str
    good_run: str
    better_run: str
    good_saved_model: Path
    """The good run's SavedModel, as it was logged."""


def _save_model(folder: Path, weight: float) -> Path:
    """A tiny model with the serving contract: image uint8 [b,h,w,3] -> distance_mm float32 [b]."""
    import tensorflow as tf

    class Distance(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = tf.Variable(weight)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            pixels = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (75, 100))
            return {"distance_mm": tf.reduce_mean(pixels, axis=[1, 2, 3]) * self.weight}

    module = Distance()
    target = folder / "saved_model"
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    return target


def _log_run(experiment_id: str, saved_model: Path, holdout_mae: float) -> str:
    import mlflow

    class Passthrough(mlflow.pyfunc.PythonModel):
        def predict(self, context: object, model_input: list[str],
                    params: dict | None = None) -> list[str]:
            return model_input

    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("holdout_mae_mm", holdout_mae)
        # Explicit requirements: skips MLflow's slow inference of the environment.
        mlflow.pyfunc.log_model(name="model", artifacts={"saved_model": str(saved_model)},
                                python_model=Passthrough(), pip_requirements=["tensorflow"])
    return run.info.run_id


@pytest.fixture(scope="session")
def mlflow_store() -> Iterator[MlflowStore]:
    """One SQLite MLflow store for the session, with two runs that logged a model."""
    import mlflow

    root = Path(tempfile.mkdtemp(prefix="edgeloop-registry-mlflow-"))
    uri = f"sqlite:///{root}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("registry-tests",
                                              artifact_location=(root / "artifacts").as_uri())
        good_model = _save_model(root / "good", 1000.0)
        good = _log_run(experiment, good_model, 20.0)
        better = _log_run(experiment, _save_model(root / "better", 2000.0), 10.0)
        yield MlflowStore(uri, good, better, good_model)
    finally:
        mlflow.set_tracking_uri(previous)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def log_model_run(mlflow_store: MlflowStore):
    """Log a SavedModel the way the trainer does, in a new run of the session's store:
    ``log_model_run(saved_model_dir) -> run_id``."""
    import mlflow

    def log(saved_model: Path) -> str:
        experiment = mlflow.get_experiment_by_name("registry-tests")
        return _log_run(experiment.experiment_id, saved_model, 20.0)
    return log


@dataclass
class Registry:
    """A running registry and stubs for it."""

    app: App
    address: str
    repository: Path
    stub: registry_service_pb2_grpc.RegistryServiceStub
    channel: aio.Channel

    admin_token: str = ADMIN
    read_token: str = READ

    def admin(self) -> tuple[tuple[str, str], ...]:
        """Metadata with the admin token."""
        return bearer(ADMIN)

    def read(self) -> tuple[tuple[str, str], ...]:
        """Metadata with the read token."""
        return bearer(READ)


def registry_settings(database_url: str, mlflow_uri: str, repository: Path, **extra: object
                      ) -> Settings:
    """Settings for a registry on a free loopback port."""
    return Settings(listen_addr="127.0.0.1:0", database_url=database_url,
                    mlflow_tracking_uri=mlflow_uri, admin_token=ADMIN, read_token=READ,
                    model_repository=str(repository), shutdown_grace_s=1.0,
                    refresh_interval_s=60.0, **extra)


@contextlib.asynccontextmanager
async def running_registry(settings: Settings) -> AsyncIterator[Registry]:
    """Serve a registry for the ``async with`` block."""
    app = App(settings)
    async with serve(app, settings) as running:
        channel = aio.insecure_channel(running.address)
        try:
            yield Registry(app, running.address, Path(settings.model_repository),
                           registry_service_pb2_grpc.RegistryServiceStub(channel), channel)
        finally:
            await channel.close()


@pytest.fixture
def registry_factory(database_url: str, mlflow_store: MlflowStore):
    """Start a registry with extra settings: ``async with registry_factory(repo, **extra)``."""
    def start(repository: Path, **extra: object):
        return running_registry(registry_settings(database_url, mlflow_store.uri, repository,
                                                  **extra))
    return start


@pytest_asyncio.fixture
async def registry(database_url: str, mlflow_store: MlflowStore, tmp_path: Path
                   ) -> AsyncIterator[Registry]:
    """A registry on loopback with a fresh database and model repository."""
    settings = registry_settings(database_url, mlflow_store.uri, tmp_path / "repository")
    async with running_registry(settings) as running:
        yield running


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
