"""`edgeloop operators`: people and programs with registry tokens of their own (registry).

An operator's token makes the registry's history name them (``operator:<name>``) instead
of ``admin``. Managing operators needs the admin token or an admin operator's token.
"""

from __future__ import annotations

import click
from edgeloop.compose.commands._registry import OPERATOR_TOKEN_ENV, registry, show_time
from edgeloop.compose.views import Listing, output_option, show_listings, timestamp
from edgeloop.compose.views import short_time as show_iso
from edgeloop.contracts.registry.v1 import operator_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb

ROLES = {"admin": operator_pb2.OPERATOR_ROLE_ADMIN, "read": operator_pb2.OPERATOR_ROLE_READ}


def role_name(role: int) -> str:
    """``admin`` or ``read`` for an OperatorRole ('-' when unset)."""
    return next((name for name, value in ROLES.items() if value == role), "-")


@click.group("operators")
def command() -> None:
    """Operators: registry tokens of their own, so the history names who changed what.

    Give each person (or program) an operator token instead of the shared admin token;
    with EDGELOOP_OPERATOR_TOKEN set, every `edgeloop` registry command sends it and the
    registry records the changes as operator:<name>. Without it the CLI sends the admin
    token (EDGELOOP_ADMIN_TOKEN or the local stack's), recorded as admin.
    """


def _print_token(operator: operator_pb2.Operator, token: str) -> None:
    click.echo(f"operator: {operator.name} ({role_name(operator.role)})")
    click.echo(f"token:    {token}")
    click.echo(f"The token is shown only this once: hand it to {operator.name} now; they set "
               f"{OPERATOR_TOKEN_ENV} to it (or log in to the web console with it).", err=True)


@command.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(sorted(ROLES)), default="read", show_default=True,
              help="admin: every call, changes included; read: reads only")
def add(name: str, role: str) -> None:
    """Create operator NAME; prints its token (shown once)."""
    with registry() as reg:
        reply = reg.CreateOperator(pb.CreateOperatorRequest(name=name, role=ROLES[role]))
    _print_token(reply.operator, reply.token)


@command.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="include revoked operators")
@output_option
def list_operators(include_revoked: bool, output: str) -> None:
    """List operators (never their tokens)."""
    with registry() as reg:
        reply = reg.ListOperators(pb.ListOperatorsRequest(include_revoked=include_revoked))
    rows = [{"operator": o.name, "role": role_name(o.role),
             "state": "revoked" if o.revoked else "active",
             "created": timestamp(o.created_at), "token_issued": timestamp(o.token_rotated_at)}
            for o in reply.operators]
    states = {"revoked": "[red]revoked[/red]", "active": "[green]active[/green]"}
    columns = ["operator", "role", "state", "created", "token_issued"]
    show_listings([Listing("operators", "operators", columns, rows,
                           {"state": states.get, "created": show_iso,
                            "token_issued": show_iso})], output)


@command.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke operator NAME: its token is refused from now on (the name is not reused)."""
    with registry() as reg:
        reply = reg.RevokeOperator(pb.RevokeOperatorRequest(name=name))
    click.echo(f"revoked {reply.operator.name} at {show_time(reply.operator.revoked_at)}")


@command.command("rotate")
@click.argument("name")
def rotate(name: str) -> None:
    """Issue a new token for operator NAME; the old one stops working at once."""
    with registry() as reg:
        reply = reg.RotateOperatorToken(pb.RotateOperatorTokenRequest(name=name))
    _print_token(reply.operator, reply.token)


@command.command("whoami")
def whoami() -> None:
    """Who the registry takes this CLI for: the actor its changes are recorded as."""
    with registry() as reg:
        reply = reg.WhoAmI(pb.WhoAmIRequest())
    click.echo(f"{reply.actor} ({role_name(reply.role)})")
