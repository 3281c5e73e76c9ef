"""Entry point of the `edgeloop` command.

Each module in :mod:`edgeloop.compose.commands` contributes one command or group by
defining ``command``; they are discovered here, so adding a command group means
adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil

import click
from edgeloop.compose import commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="edgeloop-compose", prog_name="edgeloop")
def cli() -> None:
    """edgeloop: closed-loop MLOps for camera models on robots.

    `edgeloop up` starts the local stack (PostgreSQL, MLflow, the four services) in the
    state folder (EDGELOOP_STATE_DIR, default .edgeloop); `edgeloop status` shows it;
    `edgeloop down` stops it.

    Registry commands send EDGELOOP_OPERATOR_TOKEN when it is set (an operator's own
    token: the registry's history names them, see `edgeloop operators`), else the admin
    token (EDGELOOP_ADMIN_TOKEN or the local stack's).
    """


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            cli.add_command(command)


_register_commands()


def main() -> None:
    """Run the CLI."""
    cli()
