"""Tables the CLI prints."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from edgeloop.compose.stack.disk import disk_line, stack_disks
from edgeloop.compose.stack.local import PartStatus
from edgeloop.compose.stack.spools import SpoolReport
from edgeloop.compose.stack.state import StackState
from edgeloop.compose.stack.topology import Topology
from edgeloop.platform.rayhead import stack_temp_dir
from rich.console import Console
from rich.table import Table
from rich.text import Text

_STYLE = {"SERVING": "green", "NOT_SERVING": "yellow"}


def print_status(rows: list[PartStatus], topology: Topology, output: str = "table",
                 spools: Sequence[SpoolReport] = ()) -> None:
    """The parts table, the gateways' spools and the operator URLs (JSON: the same)."""
    def health(status: str) -> str:
        style = _STYLE.get(status, "red")
        return f"[{style}]{status}[/{style}]"

    listing = Listing("parts", f"edgeloop stack ({topology.state_dir})",
                      ["part", "address", "pid", "health", "restarts", "log"],
                      [{"part": r.name, "address": r.address, "pid": r.pid, "health": r.status,
                        "restarts": r.restarts, "log": r.detail} for r in rows],
                      {"health": health, "restarts": str})
    # What the running stack uses (recorded by `up`), not what EDGELOOP_TLS says now.
    ca = StackState.load(topology.state_dir).tls.get("EDGELOOP_TLS_CA", "")
    transport = f"-cacert {ca}" if ca else "-plaintext"
    urls = {"console": topology.console_url, "mlflow": topology.mlflow_uri,
            "ray_dashboard": f"http://{topology.address('ray_dashboard')}",
            "ray_token_file": str(topology.ray_token_file),
            "ray_node_logs": str(stack_temp_dir(topology.state_dir) / "session_latest" / "logs"),
            "grpcurl": f"grpcurl {transport} {topology.address('gateway')} list",
            "tls_ca": ca}
    running = {row.name for row in rows if row.status != "STOPPED"}
    disks = stack_disks(topology.state_dir)
    if output == "json":
        click.echo(json.dumps({"parts": listing.rows,
                               "spools": [s.as_json(s.part in running) for s in spools],
                               "disks": [d.as_json() for d in disks],
                               "urls": urls}, indent=2))
        return
    show_listings([listing], output)
    for spool in spools:
        for line in spool.lines(running=spool.part in running):
            click.echo(line)
    for disk in disks:
        click.echo(disk_line(disk))
    # Plain lines, never wrapped: an operator copies the commands and paths as printed, and
    # a line break inside a command would run half of it.
    click.echo(f"web console:    {urls['console']}")
    click.echo(f"MLflow UI:      {urls['mlflow']}")
    click.echo(f"Ray dashboard:  {urls['ray_dashboard']} (token: {urls['ray_token_file']})")
    click.echo(f"Ray node logs:  {urls['ray_node_logs']}")
    click.echo(f"grpcurl:        {urls['grpcurl']}")
    if ca:
        click.echo(f"TLS:            CA {ca}; robots: edgeloop-edge drive --tls-ca {ca}")


# --- listings: one table, a stacked form when narrow, JSON on request ---------------------

OUTPUT_CHOICES = ("table", "json")
PIPED_WIDTH = 80
"""Width assumed when stdout is not a terminal (pipes, files, CI logs)."""


def output_option(func):  # noqa: ANN001, ANN201 - click decorator
    """``--output table|json`` (``-o``) for a listing command."""
    return click.option("--output", "-o", "output", type=click.Choice(OUTPUT_CHOICES),
                        default="table", show_default=True,
                        help="table: readable (a stacked record per item when the table does "
                             "not fit the width); json: machine-readable")(func)


@dataclass
class Listing:
    """Records to print: JSON-ready values per column, plus how to show each column."""

    key: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    formats: dict[str, Callable[[Any], str]] = field(default_factory=dict)
    """Per column: value -> text (rich markup allowed); default str(), '-' for empty."""

    def cell(self, row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if column in self.formats:
            return self.formats[column](value)
        if value is None or value == "" or value == []:
            return "-"
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)


def _console() -> Console:
    """The terminal's console; when piped, $COLUMNS wide or 80 (rich would guess otherwise)."""
    console = Console()
    if console.is_terminal:
        return console
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() else PIPED_WIDTH)


def _plain_len(text: str) -> int:
    return Text.from_markup(text).cell_len


def _fits(listing: Listing, width: int) -> bool:
    """Whether the table fits ``width`` with no cell folded (rich's borders: 3 per column)."""
    needed = 1
    for column in listing.columns:
        cells = [_plain_len(listing.cell(r, column)) for r in listing.rows]
        needed += max([len(column), *cells]) + 3
    return needed <= width


def _table(listing: Listing) -> Table:
    table = Table(title=listing.title)
    for column in listing.columns:
        table.add_column(column)
    for row in listing.rows:
        table.add_row(*(listing.cell(row, c) for c in listing.columns))
    return table


def _stacked(listing: Listing, console: Console) -> None:
    """One block per record: ``column: value`` lines, wrapped to the width, blank line between."""
    console.print(f"[bold]{listing.title}[/] ({len(listing.rows)})")
    label = max((len(c) for c in listing.columns), default=0)
    for row in listing.rows:
        console.print()
        for column in listing.columns:
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=label + 1, style="dim", no_wrap=True)
            grid.add_column(overflow="fold")
            grid.add_row(f"{column}:", listing.cell(row, column))
            console.print(grid)


def show_listings(listings: list[Listing], output: str) -> None:
    """Print listings as tables (stacked when too wide) or as one JSON document.

    JSON: a list of records for a single listing, else an object keyed by listing key.
    """
    if output == "json":
        data: Any = listings[0].rows if len(listings) == 1 else \
            {listing.key: listing.rows for listing in listings}
        click.echo(json.dumps(data, indent=2, default=str))
        return
    console = _console()
    for listing in listings:
        if not listing.rows:
            console.print(f"[bold]{listing.title}[/]: none")
        elif _fits(listing, console.width):
            console.print(_table(listing))
        else:
            _stacked(listing, console)


def timestamp(value: Any) -> str | None:
    """A protobuf Timestamp as ISO-8601 UTC (``2026-01-02T03:04:05Z``), None when unset."""
    if not value.seconds and not value.nanos:
        return None
    return value.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def short_time(value: str | None) -> str:
    """An ISO timestamp from :func:`timestamp` as ``YYYY-MM-DD HH:MM:SS`` ('-' when None)."""
    return value.replace("T", " ").removesuffix("Z") if value else "-"
