"""The library notices the trainer drops, raised by the libraries themselves, are gone from
its log; the libraries' other warnings stay."""

from __future__ import annotations

import logging
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from edgeloop.trainer.library_notices import NOTICES, silence_library_notices


@pytest.fixture(autouse=True)
def _filters_restored() -> Iterator[None]:
    """Each test starts from the libraries' own behaviour and leaves it so."""
    loggers = {name: logging.getLogger(name) for name, _ in NOTICES}
    saved = {name: list(logger.filters) for name, logger in loggers.items()}
    yield
    for name, logger in loggers.items():
        logger.filters[:] = saved[name]


def _logged(caplog: pytest.LogCaptureFixture, action: Callable[[], object],
            silenced: bool) -> list[str]:
    """The warning records ``action`` leaves in the log, its Python warnings logged as the
    service logs them (``logging.captureWarnings``: formatted, on logger ``py.warnings``).

    The warnings are recorded and then logged here rather than by ``captureWarnings``
    itself: pytest's own recording of each test's warnings comes first, and a process in
    which any earlier test turned the capture on ignores turning it on again."""
    caplog.clear()
    mlflow_env = logging.getLogger("mlflow.utils.environment")
    mlflow_env.addHandler(caplog.handler)  # MLflow's loggers do not propagate to the root
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # MLflow shows its type-hint notice "once" per process: each call must see it
            warnings.onceregistry.clear()  # type: ignore[attr-defined]
            if silenced:
                silence_library_notices()
            action()
            warnings.warn("an unrelated library warning", UserWarning, stacklevel=1)
        for w in caught:
            logging.getLogger("py.warnings").warning(
                "%s", warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    finally:
        mlflow_env.removeHandler(caplog.handler)
    return sorted({r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING})


def _log_model_as_the_trainer_does(tmp_path: Path) -> None:
    """Log a pyfunc model from code with an explicit signature and requirements, no type
    hints and no input example; its dataset input resolved from a file URI."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    tmp_path.mkdir()
    resolve_dataset_source((tmp_path / "snapshot.npz").as_uri())
    code = tmp_path / "echo_model.py"
    code.write_text(textwrap.dedent("""
        import mlflow
        from mlflow.pyfunc import PythonModel

        class Echo(PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input

        mlflow.models.set_model(Echo())
    """))
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 3), "x")]))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        # the default experiment would keep the artifacts in ./mlruns, in the checkout
        experiment = mlflow.create_experiment(
            "notices", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pyfunc.log_model(name="model", python_model=str(code),
                                    pip_requirements=["numpy"], signature=signature)
    finally:
        mlflow.set_tracking_uri(None)


def test_logging_a_model_as_the_trainer_does_leaves_no_notice(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    before = _logged(caplog, lambda: _log_model_as_the_trainer_does(tmp_path / "a"),
                     silenced=False)
    said = [text for _, text in NOTICES if any(text in m for m in before)]
    # pip's notice only where pip is missing (a uv environment: CI's and the service's)
    assert len(said) >= 4, f"MLflow no longer says these: nothing to drop ({before})"
    after = _logged(caplog, lambda: _log_model_as_the_trainer_does(tmp_path / "b"),
                    silenced=True)
    assert [m for m in after if any(text in m for _, text in NOTICES)] == [], after
    assert any("an unrelated library warning" in m for m in after), after


def test_rays_sigterm_notice_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("ray._private.worker")
    silence_library_notices()
    caplog.set_level(logging.WARNING, logger=logger.name)
    logger.warning("SIGTERM handler is not set because current thread is not the main thread.")
    logger.warning("Connecting to existing Ray cluster")
    assert [r.getMessage() for r in caplog.records] == ["Connecting to existing Ray cluster"]
