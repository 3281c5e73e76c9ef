"""The trainer process never imports TensorFlow; a registration's child process does.

``test_sweeps.py`` registers real versions through the child (export and holdout
evaluation); the child itself (a ``TensorFlowProcess``) is tested with the platform. These
tests check what the trainer's own process and the child import, and when it starts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from edgeloop.testing import modules_imported


def test_the_trainer_process_does_not_import_tensorflow(tmp_path: Path) -> None:
    """Starting the service's modules, validating a search space and building a snapshot's
    model arrays (the pre-resize) all run without TensorFlow or Keras."""
    code = """
        import cv2
        import numpy as np
        import edgeloop.trainer.app, edgeloop.trainer.sweeps  # the service's whole graph
        from edgeloop.contracts.features.v1 import observation_pb2
        from edgeloop.contracts.trainer.v1 import sweep_pb2
        from edgeloop.trainer import snapshot, tune

        values = tune.search_values(sweep_pb2.SearchSpace(architectures=["thesis", "small"]))
        assert values["architecture"] == ["thesis", "small"], values
        frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        observations = [observation_pb2.Observation(observation_id=str(i), jpeg=jpeg)
                        for i in range(3)]
        images, holdout = snapshot.model_arrays(observations, np.array([0, 1, 2]))
        assert images.shape == (3, 75, 100, 3) and holdout.shape == (1, 240, 320, 3)
    """
    assert modules_imported(code, ("tensorflow", "keras"), tmp_path)[:5] == []


def test_the_registration_child_imports_neither_ray_nor_mlflow(tmp_path: Path) -> None:
    """What the child gets (the registration's functions and the best trial, pickled) pulls
    in TensorFlow only: Ray Tune, pandas and MLflow would add ~120 MiB and a second of
    import to a process that only exports and measures a model."""
    import pickle

    from edgeloop.trainer import holdout, tune

    outcome = tune.TuneOutcome("t1", {"architecture": "thesis"}, 2.5, tmp_path / "checkpoint")
    calls = pickle.dumps((holdout.export_candidate, holdout.holdout_errors, outcome))
    code = """
        import pickle, sys
        from edgeloop.platform.tensorflow_process import _start_child

        _start_child(("edgeloop.trainer.model",), None)  # the sweep child's initializer
        export, evaluate, outcome = pickle.loads(bytes.fromhex(sys.argv[1]))
        assert outcome.trial_id == "t1" and callable(export) and callable(evaluate)
    """
    heavy = modules_imported(code, ("ray", "mlflow", "pandas"), tmp_path, [calls.hex()])
    assert heavy[:5] == []


class _Child:
    """Records whether the registration's child was started (``start`` is idempotent)."""

    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True


class _Manager:
    async def emit(self, *args: object, **kwargs: object) -> None:
        pass


def _progress(num_trials: int, concurrent: int) -> tuple[object, _Child]:
    from types import SimpleNamespace

    from edgeloop.contracts.trainer.v1 import sweep_pb2
    from edgeloop.trainer.sweeps import Progress

    child = _Child()
    sweep = sweep_pb2.Sweep(sweep_id="s", num_trials=num_trials, max_concurrent_trials=concurrent)
    run = SimpleNamespace(sweep=sweep, tensorflow=child, manager=_Manager(), tracking=None)
    return Progress(run, None), child  # type: ignore[arg-type]  # (no Tune thread here)


@pytest.mark.parametrize("concurrent", [1, 2])
def test_the_child_starts_once_a_trial_ends_and_none_waits(concurrent: int) -> None:
    progress, child = _progress(num_trials=3, concurrent=concurrent)

    async def scenario() -> list[bool]:
        seen = []
        for name in ("a", "b"):
            await progress._started(name, {}, "", False)  # type: ignore[attr-defined]
            await progress._finished(name, "TERMINATED")  # type: ignore[attr-defined]
            seen.append(child.started)
        await progress._started("c", {}, "", False)  # type: ignore[attr-defined]
        seen.append(child.started)
        await progress._finished("c", "TERMINATED")  # type: ignore[attr-defined]
        return [*seen, child.started]

    seen = asyncio.run(scenario())
    # the last trial's start takes the CPU the finished one left, so the child waits for
    # the next finish. One at a time that is the sweep's end: started beside the last
    # trial, its TensorFlow import would add ~270 MiB to the sweep's peak (bench/README).
    assert seen == [False, False, False, True]


@pytest.mark.parametrize(("concurrent", "handed_on", "seen"), [
    (1, False, [False, False, True]),  # one at a time: only after the last trial
    (2, False, [False, True, True]),  # two at a time: once one CPU is free
    (2, True, [False, False, True]),  # unless the rung gave it to "a" (halving.CpuBudget)
])
def test_paused_trials_keep_the_child_waiting_for_their_cpu(
        concurrent: int, handed_on: bool, seen: list[bool]) -> None:
    progress, child = _progress(num_trials=3, concurrent=concurrent)

    async def scenario() -> list[bool]:
        seen = []
        for name in ("a", "b", "c"):
            await progress._started(name, {}, "", False)  # type: ignore[attr-defined]
            if name != "c":
                await progress._paused(name, 2, 0.0)  # type: ignore[attr-defined]
        await progress._finished("c", "TERMINATED")  # type: ignore[attr-defined]
        seen.append(child.started)  # "a" and "b" wait at the rung for a CPU
        if handed_on:  # the rung keeps "a" and hands it both CPUs
            await progress._paused("a", 2, 2.0)  # type: ignore[attr-defined]
        await progress._finished("b", "TERMINATED")  # stopped at the rung
        seen.append(child.started)
        await progress._started("a", {}, "", True)  # type: ignore[attr-defined]
        await progress._finished("a", "TERMINATED")  # type: ignore[attr-defined]
        return [*seen, child.started]

    assert asyncio.run(scenario()) == seen
