"""``python -m edgeloop.console --help``: the console's variables, without serving."""

from __future__ import annotations

import subprocess
import sys

from edgeloop.console.settings import Settings


def test_help_names_the_consoles_variables_and_serves_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "edgeloop.console", "--help"],
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m edgeloop.console")
    for field in ("listen_addr", "alerts_file"):
        assert f"EDGELOOP_{field.upper()}  (" in result.stdout, field
        description = Settings.model_fields[field].description
        assert description and description in result.stdout


def test_a_stray_argument_is_refused_with_the_variables() -> None:
    result = subprocess.run([sys.executable, "-m", "edgeloop.console", "--port", "8080"],
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stdout == "" and "EDGELOOP_LISTEN_ADDR" in result.stderr
