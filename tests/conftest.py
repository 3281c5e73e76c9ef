"""Shared fixtures of the cross-service tests: tiny real models logged to a real MLflow store.

The models follow the serving contract (CONTRIBUTING.md, "Model serving signature") and
are logged the way the trainer logs them (``mlflow.pyfunc.log_model(name="model",
artifacts={"saved_model": ...})``), so the real registry registers and publishes them.
Version ``n`` answers ``1000 * n + [0, 100]`` mm, so every answer says which version made it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from edgeloop.testing.tiny_models import save_tiny_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BIASES_MM = (1000.0, 2000.0)


@dataclass(frozen=True)
class LoggedModels:
    """An MLflow store with one run per tiny model; ``run_ids[i]`` answers ~BIASES_MM[i]."""

    tracking_uri: str
    run_ids: tuple[str, ...]


def _log_run(experiment_id: str, saved_model: Path) -> str:
    import mlflow

    class Passthrough(mlflow.pyfunc.PythonModel):
        def predict(
            self, context: object, model_input: list[str], params: dict | None = None
        ) -> list[str]:
            return model_input

    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("holdout_mae_mm", 50.0)
        mlflow.pyfunc.log_model(
            name="model",
            artifacts={"saved_model": str(saved_model)},
            python_model=Passthrough(),
            pip_requirements=["tensorflow"],
        )
    return run.info.run_id


@pytest.fixture(scope="session")
def _logged_runs() -> Iterator[LoggedModels]:
    """A SQLite MLflow store for the session holding a run per tiny model (no model versions)."""
    import mlflow

    root = Path(tempfile.mkdtemp(prefix="edgeloop-e2e-mlflow-"))
    uri = f"sqlite:///{root}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "e2e", artifact_location=(root / "artifacts").as_uri()
        )
        runs = tuple(
            _log_run(experiment, save_tiny_model(root / f"model-{i}", bias))
            for i, bias in enumerate(BIASES_MM)
        )
        yield LoggedModels(uri, runs)
    finally:
        mlflow.set_tracking_uri(previous)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def logged_models(_logged_runs: LoggedModels, tmp_path_factory) -> LoggedModels:
    """The session's runs in a model registry of the module's own.

    Every module registers the runs as versions 1 and 2 of the same model: a registry shared
    across modules would number them 3, 4, ... in the second module and its fresh registry
    database would disagree with MLflow about which version is which. The copy keeps the
    runs (their artifacts stay in the session's folder, read only).
    """
    source = Path(_logged_runs.tracking_uri.removeprefix("sqlite:///"))
    target = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    with sqlite3.connect(source) as original, sqlite3.connect(target) as copy:
        original.backup(copy)
    return LoggedModels(f"sqlite:///{target}", _logged_runs.run_ids)
