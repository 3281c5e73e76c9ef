"""MLflow tracking: one parent run per sweep, one nested run per Ray Tune trial.

All MLflow calls happen in the trainer (the Tune driver), through :class:`MlflowClient`,
so trials stay light and a SQLite store never sees writers from several processes.
Every run carries the lineage tags of CONTRIBUTING.md (``sweep_id``, ``dataset_snapshot``,
``trigger``, ``git_sha``, ``trace_id``); the snapshot is the parent run's dataset input.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
PARENT_TAG = "mlflow.parentRunId"


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The code's commit (``git rev-parse HEAD`` from this file's folder), else ``unknown``."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str) -> str:
    """The id of experiment ``name``, created (under ``artifact_root`` if given) when missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


class SweepTracking:
    """The MLflow side of one sweep (thread-safe: Tune callbacks arrive on the Tune thread)."""

    def __init__(self, client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.tags = tags
        self.parent_run_id = ""
        self.trial_runs: dict[str, str] = {}
        self._lock = threading.Lock()

    def start_parent(self, run_name: str, params: dict[str, Any]) -> str:
        """Create the sweep's parent run with its tags and search-space params."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=self.tags)
        self.parent_run_id = run.info.run_id
        self._log_params(self.parent_run_id, params)
        return self.parent_run_id

    def log_snapshot(
        self, uri: str, snapshot_id: str, content_hash: str, counts: dict[str, int]
    ) -> None:
        """Log the dataset snapshot as the parent run's training dataset input."""
        dataset = MetaDataset(
            resolve_dataset_source(uri), name=f"snapshot-{snapshot_id}", digest=content_hash[:36]
        )
        entity = DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")]
        )
        self.client.log_inputs(self.parent_run_id, datasets=[entity])
        self._log_params(
            self.parent_run_id,
            {
                "dataset_content_hash": content_hash,
                **{f"dataset_{k}_count": v for k, v in counts.items()},
            },
        )

    def start_trial(self, trial_id: str, params: dict[str, Any]) -> str:
        """Create a trial's run nested under the parent (a restarted trial keeps its run)."""
        with self._lock:
            if trial_id in self.trial_runs:
                return self.trial_runs[trial_id]
        tags = {**self.tags, PARENT_TAG: self.parent_run_id, "ray_trial_id": trial_id}
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial_id}", tags=tags)
        with self._lock:
            self.trial_runs[trial_id] = run.info.run_id
        self._log_params(run.info.run_id, params)
        return run.info.run_id

    def log_epoch(self, trial_id: str, epoch: int, metrics: dict[str, float]) -> None:
        """Log one epoch's metrics on the trial's run (step = epoch)."""
        run_id = self.trial_runs.get(trial_id)
        if run_id:
            import time

            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id, metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()]
            )

    def end_trial(self, trial_id: str, status: str) -> None:
        """Close a trial's run: FINISHED, or FAILED when the trial errored."""
        run_id = self.trial_runs.get(trial_id)
        if run_id:
            self.client.set_terminated(run_id, "FAILED" if status == "ERROR" else "FINISHED")

    def finish(self, status: str, metrics: dict[str, float] | None = None) -> None:
        """Close every open run; ``status`` is FINISHED, FAILED or KILLED."""
        for run_id in list(self.trial_runs.values()):
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, "KILLED" if status != "FINISHED" else "FINISHED")
        if self.parent_run_id:
            if metrics:
                self.client.log_batch(
                    self.parent_run_id,
                    metrics=[Metric(k, v, _now_ms(), 0) for k, v in metrics.items()],
                )
            self.client.set_terminated(self.parent_run_id, status)

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
