"""The library notices the trainer silences, raised by the libraries themselves, are gone;
the libraries' other warnings stay."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest
from edgeloop.trainer.library_notices import LOGGED, silence_library_notices


@pytest.fixture(autouse=True)
def _filters_restored() -> Iterator[None]:
    """Each test starts from the libraries' own behaviour and leaves it so."""
    loggers = [logging.getLogger(name) for name, _ in LOGGED]
    saved = [list(logger.filters) for logger in loggers]
    with warnings.catch_warnings():
        yield
    for logger, filters in zip(loggers, saved, strict=True):
        logger.filters[:] = filters


def _mlflow_warnings(silenced: bool) -> list[str]:
    """What MLflow's dataset source resolution and one unrelated warning leave behind."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings(record=True) as caught:  # restores the filters after
        warnings.simplefilter("always")
        if silenced:
            silence_library_notices()
        resolve_dataset_source("file:///tmp/snapshot.npz")
        warnings.warn("an unrelated library warning", UserWarning, stacklevel=1)
    return [str(w.message) for w in caught]


def test_mlflows_ambiguous_source_warning_is_silenced_and_others_are_not() -> None:
    before = _mlflow_warnings(silenced=False)
    assert any("can be interpreted in multiple ways" in m for m in before), \
        f"MLflow no longer warns: nothing to silence ({before})"
    assert _mlflow_warnings(silenced=True) == ["an unrelated library warning"]


def test_mlflows_missing_pip_notice_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    from mlflow.utils import environment

    logger = logging.getLogger("mlflow.utils.environment")
    logger.addHandler(caplog.handler)  # MLflow's loggers do not propagate to the root
    try:
        caplog.set_level(logging.WARNING, logger=logger.name)
        environment._mlflow_conda_env(additional_pip_deps=["tensorflow"])
        if not any("pip version" in r.getMessage() for r in caplog.records):
            pytest.skip("pip is installed here: MLflow has nothing to say")
        caplog.clear()
        silence_library_notices()
        environment._mlflow_conda_env(additional_pip_deps=["tensorflow"])
        logger.warning("another notice")
        messages = {r.getMessage() for r in caplog.records}
        assert messages == {"another notice"}, messages
    finally:
        logger.removeHandler(caplog.handler)


def test_rays_sigterm_notice_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("ray._private.worker")
    silence_library_notices()
    caplog.set_level(logging.WARNING, logger=logger.name)
    logger.warning("SIGTERM handler is not set because current thread is not the main thread.")
    logger.warning("Connecting to existing Ray cluster")
    assert [r.getMessage() for r in caplog.records] == ["Connecting to existing Ray cluster"]
