"""``python -m edgeloop.trainer --help``: the trainer's variables, without starting anything."""

from __future__ import annotations

from edgeloop.testing import help_of
from edgeloop.trainer.settings import Settings


def test_help_names_the_trainers_variables_and_starts_nothing() -> None:
    # no database or MLflow in the environment: a start would fail on them
    shown = help_of("edgeloop.trainer")
    assert "EDGELOOP_DATABASE_URL  (required)" in shown
    assert "EDGELOOP_MAX_CONCURRENT_TRIALS  (default 0)" in shown
    description = Settings.model_fields["max_concurrent_trials"].description
    assert description and description in shown
