"""The CLI's listing output: a table when it fits, a record per item when not, JSON."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from edgeloop.compose.views import Listing, output_option, show_listings

EVENTS = [{"fired": "2026-01-02T03:04:05Z", "deployment": "parking-lot-north",
           "rule": "saturation_band", "kind": "covariate", "value": 71.234,
           "threshold": "outside [40.0, 60.0]", "model": "distance@3", "state": "open",
           "sweep": "7f1c2d3e-aaaa-bbbb-cccc-0123456789ab",
           "note": "retraining sweep 7f1c2d3e started"}]


@click.command()
@output_option
def _drift_like(output: str) -> None:
    show_listings([Listing("events", "drift events", list(EVENTS[0]), EVENTS),
                   Listing("rules", "rules now", ["rule", "status"],
                           [{"rule": "saturation_band", "status": "firing"}])], output)


def _invoke(columns: int, *args: str) -> str:
    result = CliRunner().invoke(_drift_like, list(args), env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_wide_enough_prints_one_row_per_item() -> None:
    text = _invoke(300)
    row = next(line for line in text.splitlines() if "parking-lot-north" in line)
    assert "saturation_band" in row and "retraining sweep 7f1c2d3e started" in row


@pytest.mark.parametrize("columns", [80, 60])
def test_narrow_prints_a_record_per_item_with_whole_values(columns: int) -> None:
    lines = _invoke(columns).splitlines()
    assert all(len(line) <= columns for line in lines)
    assert "deployment: parking-lot-north" in [" ".join(line.split()) for line in lines]
    assert any(line.split()[:2] == ["threshold:", "outside"] for line in lines)
    # The short listing still fits as a table.
    assert any("saturation_band" in line and "firing" in line for line in lines)


def test_json_is_machine_readable_and_keeps_raw_values() -> None:
    data = json.loads(_invoke(80, "--output", "json"))
    assert data["events"][0]["value"] == 71.234
    assert data["rules"] == [{"rule": "saturation_band", "status": "firing"}]
