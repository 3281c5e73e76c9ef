"""`edgeloop sweeps` against a real trainer process (and a real, empty features service).

The trainer runs as shipped (``python -m edgeloop.trainer``, its own local Ray with one
CPU, real PostgreSQL). A finished sweep with its events is written through the
trainer's own store, so `watch` and `list` render a real sweep record without spending
minutes on training here; the trainer's own tests run real sweeps end to end.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from edgeloop.compose.cli import cli
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2
from edgeloop.testing import ServiceProcess, free_port
from google.protobuf.timestamp_pb2 import Timestamp

S = sweep_pb2


@pytest.fixture(scope="module")
def trainer(pg_cluster: Any) -> Iterator[dict[str, str]]:
    folder = Path(tempfile.mkdtemp(prefix="edgeloop-cli-sweeps-"))
    database_url = pg_cluster.ensure_database(f"cli_{uuid.uuid4().hex[:10]}")
    features = ServiceProcess(
        "edgeloop.features",
        {
            "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
            "EDGELOOP_DATABASE_URL": database_url,
            "EDGELOOP_OBJECT_STORE_DIR": str(folder / "objects"),
        },
        folder / "features.log",
    ).start()
    process = ServiceProcess(
        "edgeloop.trainer",
        {
            "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
            "EDGELOOP_DATABASE_URL": database_url,
            "EDGELOOP_OBJECT_STORE_DIR": str(folder / "objects"),
            "EDGELOOP_MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "EDGELOOP_FEATURES_ADDR": features.address,
            "EDGELOOP_WEBHOOK_ADDR": "",
            "EDGELOOP_WORK_DIR": str(folder / "work"),
            "EDGELOOP_RAY_NUM_CPUS": "1",
            "EDGELOOP_RAY_DASHBOARD_PORT": str(free_port()),
            "EDGELOOP_RAY_AUTH_TOKEN_FILE": str(folder / "ray_token"),
        },
        folder / "trainer.log",
    )
    try:
        process.start(timeout_s=240)
        yield {"address": process.address, "database_url": database_url}
    finally:
        process.stop()
        features.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _run(trainer: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(
        cli, ["sweeps", *args], env={"EDGELOOP_TRAINER_ADDR": trainer["address"]}
    )


def _finished_sweep(database_url: str) -> str:
    """Store a succeeded sweep and its events the way the trainer records them."""
    from edgeloop.trainer.events import make_event
    from edgeloop.trainer.store import SweepStore

    async def write() -> str:
        store = SweepStore(database_url)
        await store.open()
        now = Timestamp()
        now.GetCurrentTime()
        sweep = S.Sweep(
            sweep_id="cli0sweep001",
            model_name="distance",
            trigger="manual",
            state=S.SWEEP_STATE_QUEUED,
            num_trials=2,
            created_at=now,
        )
        await store.insert(sweep, trainer_service_pb2.StartSweepRequest())
        sweep.trials.add(
            trial_id="t_00000",
            state="TERMINATED",
            epochs_done=3,
            best_val_mae_mm=21.5,
            params={"batch_size": "16"},
        )
        sweep.state, sweep.model_version, sweep.promoted = S.SWEEP_STATE_SUCCEEDED, "3", True
        sweep.holdout_mae_mm, sweep.promotion_note, sweep.best_trial_id = (
            22.25,
            "no champion",
            "t_00000",
        )
        await store.save(sweep)
        await store.add_event(
            make_event(
                sweep,
                S.SWEEP_EVENT_TYPE_EPOCH,
                "trial t_00000 epoch 3",
                trial_id="t_00000",
                epoch=3,
            )
        )
        await store.add_event(
            make_event(
                sweep, S.SWEEP_EVENT_TYPE_VERSION_REGISTERED, "registered distance version 3"
            )
        )
        await store.close()
        return sweep.sweep_id

    return asyncio.run(write())


def test_start_with_no_data_is_refused_clearly(trainer: dict[str, str]) -> None:
    result = _run(trainer, "start", "--deployment", "nowhere", "--no-watch")
    assert result.exit_code == 1
    assert "FAILED_PRECONDITION" in result.output
    assert "matches 0 labelled observations" in result.output


def test_list_watch_and_cancel_a_finished_sweep(trainer: dict[str, str]) -> None:
    sweep_id = _finished_sweep(trainer["database_url"])
    listed = _run(trainer, "list")
    assert listed.exit_code == 0, listed.output
    assert sweep_id in listed.output and "SUCCEEDED" in listed.output and "22.2" in listed.output
    watched = _run(trainer, "watch", sweep_id)
    assert watched.exit_code == 0, watched.output
    assert "registered distance version 3" in watched.output
    assert (
        "SUCCEEDED" in watched.output
        and "version 3" in watched.output
        and "promoted" in watched.output
    )
    cancelled = _run(trainer, "cancel", sweep_id)
    assert cancelled.exit_code == 1 and "already ended" in cancelled.output
    unknown = _run(trainer, "watch", "no-such-sweep")
    assert unknown.exit_code == 1 and "NOT_FOUND" in unknown.output
