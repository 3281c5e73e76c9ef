"""Warm starts: a sweep's trials fine-tune a registered version instead of starting from scratch.

A retraining sweep after drift has the old world's frames and the new world's; trained
from random weights in a few epochs its model often forgets the old world (and the
registry's per-world gate then refuses it), while the version being served already knows
it. Fine-tuning that version keeps what it knew and needs fewer epochs for the new world.

Every registered version carries its Keras training weights as the MLflow artifact
``weights/`` of its run (``model.weights.h5`` and ``model_config.json``: the shape
hyperparameters the weights need). A warm-started sweep downloads them once, pins the
search space's shape hyperparameters to the version's and hands the weights file to every
trial (``init_weights``), so trials still search learning rate, batch size, dropout and
epochs. Like the snapshot's arrays, the file must be readable where the trials run.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from edgeloop.contracts.registry.v1 import (
    deployment_pb2,
    model_pb2,
)
from edgeloop.platform.errors import FailedPrecondition, NotFound
from edgeloop.trainer.registration import find_version
from edgeloop.trainer.tune import WEIGHTS_FILE

log = logging.getLogger(__name__)
ARTIFACT = "weights"
CONFIG_FILE = "model_config.json"
SHAPE_KEYS = ("architecture", "filters", "dense_units")
"""The hyperparameters the weights' shapes depend on; the others stay searchable."""


@dataclass(frozen=True)
class WarmStart:
    """The downloaded weights of a version and the shape they need."""

    version: str
    weights_path: Path
    shape: dict[str, Any]


def describe(selector: deployment_pb2.VersionSelector) -> str:
    """``version 3``, ``alias champion`` or ``latest``, for messages."""
    kind = selector.WhichOneof("kind")
    return "latest" if kind == "latest" else f"{kind} {getattr(selector, kind or 'version')}"


async def resolve(channel: grpc.aio.Channel, token: str, model_name: str,
                  selector: deployment_pb2.VersionSelector) -> model_pb2.ModelVersion:
    """The registered version ``selector`` names; NotFound when the registry has none."""
    found = await find_version(channel, token, model_name, selector)
    if found is None:
        raise NotFound(f"warm_start: model {model_name!r} has no {describe(selector)}")
    return found


def check_available(tracking_uri: str, version: model_pb2.ModelVersion) -> None:
    """FailedPrecondition unless the version's run holds training weights (checked at submit)."""
    import mlflow

    names = {Path(a.path).name for a in
             mlflow.MlflowClient(tracking_uri).list_artifacts(version.run_id, ARTIFACT)}
    if not {WEIGHTS_FILE, CONFIG_FILE} <= names:
        raise FailedPrecondition(
            f"warm_start: version {version.version} of {version.model_name!r} has no training "
            f"weights (its MLflow run {version.run_id} has no '{ARTIFACT}/' artifact; versions "
            "registered before warm starts existed cannot be fine-tuned)")


def download(tracking_uri: str, version: model_pb2.ModelVersion, folder: Path) -> WarmStart:
    """Fetch the version's weights into ``folder``."""
    import mlflow

    folder.mkdir(parents=True, exist_ok=True)
    fetched = Path(mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=ARTIFACT, dst_path=str(folder),
        tracking_uri=tracking_uri))
    shape = json.loads((fetched / CONFIG_FILE).read_text())
    log.info("warm start weights fetched", extra={"warm_start_version": version.version,
                                                  "run_id": version.run_id})
    return WarmStart(version.version, fetched / WEIGHTS_FILE,
                     {key: shape[key] for key in SHAPE_KEYS})


def log_weights(tracking_uri: str, run_id: str, checkpoint_dir: Path,
                config: dict[str, Any]) -> None:
    """Keep the best trial's weights and their shape in its run, for later warm starts."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(checkpoint_dir / WEIGHTS_FILE, Path(folder) / WEIGHTS_FILE)
        shape = {key: config[key] for key in SHAPE_KEYS}
        Path(folder, CONFIG_FILE).write_text(json.dumps(shape, sort_keys=True))
        mlflow.MlflowClient(tracking_uri).log_artifacts(run_id, folder, ARTIFACT)


def pin_shape(values: dict[str, list[Any]], warm: WarmStart) -> dict[str, list[Any]]:
    """The search values with the shape hyperparameters fixed to the warm start's."""
    return {**values, **{key: [warm.shape[key]] for key in SHAPE_KEYS}}
