"""``python -m edgeloop.trainer --help``: the trainer's variables, without starting anything."""

from __future__ import annotations

import subprocess
import sys

from edgeloop.trainer.settings import Settings


def test_help_names_the_trainers_variables_and_starts_nothing() -> None:
    # no database or MLflow in the environment: a start would fail on them
    result = subprocess.run([sys.executable, "-m", "edgeloop.trainer", "--help"],
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m edgeloop.trainer")
    assert "EDGELOOP_DATABASE_URL  (required)" in result.stdout
    assert "EDGELOOP_MAX_CONCURRENT_TRIALS  (default 0)" in result.stdout
    description = Settings.model_fields["max_concurrent_trials"].description
    assert description and description in result.stdout
