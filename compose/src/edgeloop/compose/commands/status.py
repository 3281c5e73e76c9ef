"""`edgeloop status`: health and address of every part of the local stack; the gateways."""

from __future__ import annotations

from dataclasses import dataclass

import click
from edgeloop.compose.endpoints import state_dir
from edgeloop.compose.stack import local
from edgeloop.compose.stack.spools import SpoolReport, read_spools
from edgeloop.compose.stack.topology import Topology
from edgeloop.compose.views import output_option, print_status


@dataclass(frozen=True)
class StackHealth:
    """What `edgeloop status` shows: each part's health and each gateway's spool."""

    parts: list[local.PartStatus]
    spools: list[SpoolReport]

    @property
    def exit_code(self) -> int:
        """1 if any part is not SERVING; 2 if every part serves but a gateway's recording
        needs an operator; else 0."""
        if any(row.status != "SERVING" for row in self.parts):
            return 1
        running = {row.name for row in self.parts if row.status != "STOPPED"}
        return 2 if any(spool.in_trouble(spool.part in running) for spool in self.spools) else 0


def stack_health(topology: Topology) -> StackHealth:
    """Probe every part `up` recorded and read every gateway's spool status."""
    rows = local.status(topology)
    gateways = [row.name for row in rows if row.name.startswith("gateway")]
    return StackHealth(rows, read_spools(topology, gateways))


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
    health = stack_health(topology)
    if not health.parts:
        raise click.ClickException(f"nothing is running from {topology.state_dir}; "
                                   "run `edgeloop up`")
    print_status(health.parts, topology, output, health.spools)
    if health.exit_code:
        raise SystemExit(health.exit_code)
