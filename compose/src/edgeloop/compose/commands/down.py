"""`edgeloop down`: stop everything `edgeloop up` started; with --purge, delete its data too."""

from __future__ import annotations

import click
from edgeloop.compose.endpoints import state_dir
from edgeloop.compose.stack import local
from edgeloop.compose.stack.purge import purge as purge_stack
from edgeloop.compose.stack.purge import stack_folders
from edgeloop.compose.stack.spools import read_spools
from edgeloop.compose.stack.topology import Topology


@click.command("down")
@click.option("--purge", is_flag=True,
              help="Then delete all the stack keeps, to start over: the state folder (the "
                   "database, MLflow's runs and models, images, spools, logs, tokens, "
                   "certificates) and its folders elsewhere (PostgreSQL's data when kept "
                   "outside, the Ray head's sessions).")
@click.option("--yes", "-y", is_flag=True, help="Purge without asking first.")
def command(purge: bool, yes: bool) -> None:
    """Stop the services, MLflow and PostgreSQL; data stays in the state folder (frames a
    gateway could not forward yet stay in its spool and go to features at the next `up`).

    `edgeloop down --purge` deletes it all after stopping; deleting the state folder by hand
    leaves PostgreSQL's data behind where it lives outside (root, a private home folder),
    and `edgeloop up` then refuses to start on it."""
    topology = Topology.from_env(state_dir())
    if purge and not yes:
        _confirm_purge(topology)
    survivors = local.down(topology, lambda line: click.echo(f"  {line}"))
    if survivors:
        raise click.ClickException(f"processes still alive after SIGKILL: {survivors}")
    if purge:
        purge_stack(topology.state_dir, lambda line: click.echo(f"  {line}"))
        click.echo("stopped and purged")
        return
    for spool in read_spools(topology, []):
        if spool.status and spool.status.backlog_bytes:
            click.echo(f"  {spool.lines(running=False)[0]}")
    click.echo("stopped")


def _confirm_purge(topology: Topology) -> None:
    click.echo("This stops the stack and deletes for good:")
    for folder in (f for f in stack_folders(topology.state_dir) if f.exists()):
        click.echo(f"  {folder}")
    for spool in read_spools(topology, []):
        if spool.status and spool.status.backlog_bytes:
            click.echo(f"  with frames not recorded yet: {spool.lines(running=False)[0]}")
    click.confirm("Delete them?", abort=True)
