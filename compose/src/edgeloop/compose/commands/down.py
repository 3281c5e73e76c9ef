"""`edgeloop down`: stop everything `edgeloop up` started."""

from __future__ import annotations

import click
from edgeloop.compose.endpoints import state_dir
from edgeloop.compose.stack import local
from edgeloop.compose.stack.spools import read_spools
from edgeloop.compose.stack.topology import Topology


@click.command("down")
def command() -> None:
    """Stop the services, MLflow and PostgreSQL; data stays in the state folder (frames a
    gateway could not forward yet stay in its spool and go to features at the next `up`)."""
    topology = Topology.from_env(state_dir())
    survivors = local.down(topology, lambda line: click.echo(f"  {line}"))
    if survivors:
        raise click.ClickException(f"processes still alive after SIGKILL: {survivors}")
    for spool in read_spools(topology, []):
        if spool.status and spool.status.backlog_bytes:
            click.echo(f"  {spool.lines(running=False)[0]}")
    click.echo("stopped")
