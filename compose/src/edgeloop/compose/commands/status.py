"""`edgeloop status`: health and address of every part of the local stack; the gateways."""

from __future__ import annotations

import click
from edgeloop.compose.endpoints import state_dir
from edgeloop.compose.stack import local
from edgeloop.compose.stack.spools import read_spools
from edgeloop.compose.stack.topology import Topology
from edgeloop.compose.views import output_option, print_status


@click.command("status")
@output_option
def command(output: str) -> None:
    """Show each part's health, address, pid and log, and each gateway's spool (bytes waiting
    for features, frames answered without a record), the versions it serves with their
    runtimes and the robots streaming to it, and the free disk where the stack's data is.

    Exit 1 if any part is not SERVING; exit 2 if every part serves but a gateway's recording
    needs an operator (live frames answered without a record, a full disk, features failing,
    or a status file the gateway no longer rewrites); else 0."""
    topology = Topology.from_env(state_dir())
    rows = local.status(topology)
    if not rows:
        raise click.ClickException(f"nothing is running from {topology.state_dir}; "
                                   "run `edgeloop up`")
    gateways = [row.name for row in rows if row.name.startswith("gateway")]
    spools = read_spools(topology, gateways)
    print_status(rows, topology, output, spools)
    if any(row.status != "SERVING" for row in rows):
        raise SystemExit(1)
    running = {row.name for row in rows if row.status != "STOPPED"}
    if any(spool.in_trouble(spool.part in running) for spool in spools):
        raise SystemExit(2)
