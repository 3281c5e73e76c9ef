"""``python -m edgeloop.console --help``: the console's variables, without serving."""

from __future__ import annotations

from edgeloop.console.settings import Settings
from edgeloop.testing import help_of, run_entry_point


def test_help_names_the_consoles_variables_and_serves_nothing() -> None:
    shown = help_of("edgeloop.console")
    for field in ("listen_addr", "alerts_file"):
        assert f"EDGELOOP_{field.upper()}  (" in shown, field
        description = Settings.model_fields[field].description
        assert description and description in shown


def test_a_stray_argument_is_refused_with_the_variables() -> None:
    result = run_entry_point("edgeloop.console", "--port", "8080")
    assert result.returncode == 2
    assert result.stdout == "" and "EDGELOOP_LISTEN_ADDR" in result.stderr
