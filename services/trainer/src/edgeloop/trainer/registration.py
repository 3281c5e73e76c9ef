"""Registration: export the best trial, judge it on the holdout, log it, register it.

The candidate and the current champion are evaluated on the SAME holdout split of the
sweep's snapshot, through their SavedModels' serving signatures (so what is measured is
what will be served); the registry's gate then decides promotion from those numbers.
Both are also judged per *world* (the snapshot's drift periods, see ``snapshot``): the
per-world MAEs go to the version's metrics (``holdout_mae_mm/world/<w>`` and
``champion_mae_mm/world/<w>``, with the number of drive runs the world's holdout has in
``holdout_runs/world/<w>``), where the gate refuses a candidate that forgets an old world
even when it wins overall (a world of few runs by wider bounds:
``edgeloop.platform.forgetting``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from edgeloop.contracts.registry.v1 import (
    deployment_pb2,
    model_pb2,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from edgeloop.platform import DEFAULT_DEADLINE_S, bearer
from edgeloop.platform.errors import EdgeloopError, Unavailable
from edgeloop.platform.worlds import CANDIDATE_MAE, CHAMPION_MAE, HOLDOUT_RUNS, metric_name
from edgeloop.trainer.holdout import Candidate
from google.protobuf.timestamp_pb2 import Timestamp

log = logging.getLogger(__name__)
PIP_REQUIREMENTS = ["mlflow>=3.5,<4", "tensorflow==2.21.*", "numpy"]
REGISTER_DEADLINE_S = 120.0


@dataclass(frozen=True)
class Registration:
    """What the registry answered."""

    version: str
    promoted: bool
    note: str
    evaluation: model_pb2.HoldoutEvaluation
    # when the registry's gate decided (unset when promotion was not asked for, or an
    # earlier attempt of the same request had promoted it)
    decided_at: Timestamp | None = None


def holdout_worlds(manifest: dict[str, Any]) -> list[str]:
    """The world of every holdout frame, in the arrays' order."""
    return [e.get("world") or e["deployment"] for e in manifest["observations"]
            if e["split"] == "holdout"]


def holdout_runs_by_world(manifest: dict[str, Any]) -> dict[str, int]:
    """Per world (metric-safe name): how many drive runs its holdout frames come from."""
    from edgeloop.trainer.snapshot import drive_units

    holdout = [e for e in manifest["observations"] if e["split"] == "holdout"]
    runs: dict[str, set[int]] = {}
    for entry, unit in zip(holdout, drive_units(holdout), strict=True):
        runs.setdefault(metric_name(entry.get("world") or entry["deployment"]), set()).add(unit)
    return {world: len(units) for world, units in runs.items()}


def mae_by_world(errors: np.ndarray, worlds: list[str]) -> dict[str, float]:
    """Mean absolute error per world (metric-safe names)."""
    found: dict[str, list[float]] = {}
    for error, world in zip(errors, worlds, strict=True):
        found.setdefault(metric_name(world), []).append(float(error))
    return {world: float(np.mean(values)) for world, values in found.items()}


def world_metrics(candidate: np.ndarray | None, champion: np.ndarray | None,
                  manifest: dict[str, Any]) -> dict[str, float]:
    """The per-world metrics of a registration: candidate's MAE, the champion's when known,
    and the drive runs of each world's holdout."""
    worlds = holdout_worlds(manifest)
    metrics: dict[str, float] = {}
    for prefix, errors in ((CANDIDATE_MAE, candidate), (CHAMPION_MAE, champion)):
        if errors is not None:
            metrics |= {prefix + w: v for w, v in mae_by_world(errors, worlds).items()}
    if candidate is not None:
        metrics |= {HOLDOUT_RUNS + w: float(n)
                    for w, n in holdout_runs_by_world(manifest).items()}
    return metrics


def log_pyfunc(tracking_uri: str, run_id: str, saved_model_dir: Path) -> float:
    """Log the SavedModel as MLflow model ``model`` in ``run_id``; returns the seconds it took."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,), "distance_mm")]),
    )
    code = str(Path(__file__).with_name("pyfunc_model.py"))
    # the short explicit list is the model's environment; MLflow would otherwise copy the
    # whole workspace's uv.lock next to every model
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    started = time.perf_counter()
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    with mlflow.start_run(run_id=run_id, experiment_id=run.info.experiment_id):
        mlflow.pyfunc.log_model(
            name="model",
            python_model=code,
            artifacts={"saved_model": str(saved_model_dir)},
            pip_requirements=PIP_REQUIREMENTS,
            signature=signature,
        )
    # start_run(run_id=...) ends the run as FINISHED, which it already was
    return time.perf_counter() - started


TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def registry_error(method: str, exc: grpc.aio.AioRpcError) -> EdgeloopError:
    """``Unavailable`` when waiting may help (the registry is down or slow), else a failure."""
    message = f"registry: {method} failed: {exc.code().name} {exc.details()}"
    return Unavailable(message) if exc.code() in TRANSIENT else EdgeloopError(message)


async def champion(
    channel: grpc.aio.Channel, token: str, model_name: str
) -> model_pb2.ModelVersion | None:
    """The version aliased ``champion``, or None when the model has none yet."""
    return await find_version(
        channel, token, model_name, deployment_pb2.VersionSelector(alias="champion")
    )


async def find_version(
    channel: grpc.aio.Channel,
    token: str,
    model_name: str,
    selector: deployment_pb2.VersionSelector,
) -> model_pb2.ModelVersion | None:
    """The version ``selector`` names, or None when the registry has none (asked with
    ``allow_missing``: "none yet" is an answer, not a failed call in the sweep's trace)."""
    stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
    request = registry_service_pb2.GetModelVersionRequest(
        model_name=model_name, selector=selector, allow_missing=True)
    try:
        reply = await stub.GetModelVersion(
            request, metadata=bearer(token), timeout=DEFAULT_DEADLINE_S
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # a registry before allow_missing
            return None
        raise registry_error("GetModelVersion", exc) from exc
    return reply.version if reply.HasField("version") else None


async def evaluate(
    channel: grpc.aio.Channel,
    token: str,
    model_name: str,
    holdout_id: str,
    candidate: Candidate,
    arrays_path: Path,
    measure: Callable[[str, Path], Awaitable[np.ndarray]],
    champion_errors: dict[str, np.ndarray] | None = None,
) -> model_pb2.HoldoutEvaluation:
    """Candidate and champion on the same holdout, as the gate's evidence.

    ``measure(saved_model_dir, arrays_path)`` computes the champion's error per holdout
    frame (:func:`~edgeloop.trainer.holdout.holdout_errors`, run where TensorFlow is: the sweep's
    :class:`~edgeloop.platform.tensorflow_process.TensorFlowProcess`); the errors go into
    ``champion_errors["errors"]`` when given (for the per-world numbers).
    """
    evaluation = model_pb2.HoldoutEvaluation(
        holdout_id=holdout_id,
        candidate_mae_mm=candidate.holdout_mae_mm,
        sample_count=candidate.holdout_count,
    )
    current = await champion(channel, token, model_name)
    if current is None:
        return evaluation
    if not current.published_path or not Path(current.published_path).exists():
        # the gate then sees no champion number; say why in the log instead of guessing one
        log.warning(
            "champion SavedModel not readable; no champion comparison",
            extra={"champion_version": current.version, "path": current.published_path},
        )
        return evaluation
    evaluation.champion_version = current.version
    errors = await measure(current.published_path, arrays_path)
    evaluation.champion_mae_mm = float(np.mean(errors))
    if champion_errors is not None:
        champion_errors["errors"] = errors
    return evaluation


async def register(
    channel: grpc.aio.Channel,
    token: str,
    request: dict[str, Any],
    evaluation: model_pb2.HoldoutEvaluation,
) -> Registration:
    """RegisterModelVersion with metrics, tags and the evaluation; the gate decides promotion."""
    stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
    message = registry_service_pb2.RegisterModelVersionRequest(
        model_name=request["model_name"],
        run_id=request["run_id"],
        artifact_path="model",
        metrics=request["metrics"],
        tags=request["tags"],
        evaluation=evaluation,
        promote=request["promote"],
        request_id=request["request_id"],
    )
    try:
        reply = await stub.RegisterModelVersion(
            message, metadata=bearer(token), timeout=REGISTER_DEADLINE_S
        )
    except grpc.aio.AioRpcError as exc:
        raise registry_error("RegisterModelVersion", exc) from exc
    promoted = reply.HasField("promotion") and reply.promotion.promoted
    note = reply.promotion.reason if reply.HasField("promotion") else "promotion not requested"
    decided_at = reply.promotion.decided_at if reply.promotion.HasField("decided_at") else None
    return Registration(reply.version.version, promoted, note, evaluation, decided_at)
