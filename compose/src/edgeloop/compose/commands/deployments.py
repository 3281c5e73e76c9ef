"""`edgeloop deployments`: create, list, activate, assign devices, show history (registry)."""

from __future__ import annotations

import click
from edgeloop.compose.commands._registry import parse_selector, registry, show_selector, show_time
from edgeloop.contracts.registry.v1 import deployment_pb2 as dpb
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from rich.console import Console
from rich.table import Table

STRATEGIES = {"direct": dpb.STRATEGY_DIRECT, "shadow": dpb.STRATEGY_SHADOW,
              "canary": dpb.STRATEGY_CANARY, "ab": dpb.STRATEGY_AB, "bandit": dpb.STRATEGY_BANDIT}


@click.group("deployments")
def command() -> None:
    """Deployments: which model version answers which devices, and how."""


def _arms(specs: tuple[str, ...]) -> list[dpb.Arm]:
    arms = []
    for spec in specs:
        name, sep, selector = spec.partition("=")
        if not sep:
            raise click.BadParameter(f"{spec!r}: use NAME=SELECTOR, e.g. a=@champion",
                                     param_hint="--arm")
        arms.append(dpb.Arm(name=name, selector=parse_selector(selector)))
    return arms


@command.command("create")
@click.argument("name")
@click.option("--model", default="", help="registered model (omit to only collect data)")
@click.option("--select", "selector", default=None, help="version: 3, @alias or latest")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="direct",
              show_default=True)
@click.option("--challenger", default=None, help="shadow/canary/A-B challenger: 3, @alias, latest")
@click.option("--canary-fraction", type=float, default=0.0, help="share of devices on the canary")
@click.option("--arm", "arm_specs", multiple=True, help="bandit arm NAME=SELECTOR (repeat)")
@click.option("--data-group", default="", help="data group (default: the name)")
@click.option("--description", default="")
@click.option("--active", is_flag=True, help="serve assigned devices at once")
def create(name: str, model: str, selector: str | None, strategy: str, challenger: str | None,
           canary_fraction: float, arm_specs: tuple[str, ...], data_group: str,
           description: str, active: bool) -> None:
    """Create a deployment."""
    deployment = dpb.Deployment(name=name, model_name=model, strategy=STRATEGIES[strategy],
                                canary_fraction=canary_fraction, arms=_arms(arm_specs),
                                data_group=data_group, description=description, active=active)
    if selector is not None:
        deployment.selector.CopyFrom(parse_selector(selector))
    if challenger is not None:
        deployment.challenger.CopyFrom(parse_selector(challenger))
    with registry() as reg:
        stored = reg.CreateDeployment(pb.CreateDeploymentRequest(deployment=deployment)).deployment
    _print([stored])


def _print(deployments: list[dpb.Deployment]) -> None:
    table = Table(title="deployments")
    for column in ("name", "active", "model", "strategy", "selector", "arms now", "rev", "updated"):
        table.add_column(column)
    for d in deployments:
        strategy = dpb.Strategy.Name(d.strategy).removeprefix("STRATEGY_").lower()
        selector = show_selector(d.selector)
        if d.HasField("challenger"):
            selector += f" / {show_selector(d.challenger)}"
        if d.strategy == dpb.STRATEGY_CANARY:
            selector += f" ({d.canary_fraction:.0%})"
        arms = ", ".join(f"{a.arm}={a.model_version or '-'}" for a in d.resolved) or "-"
        table.add_row(d.name, "yes" if d.active else "no", d.model_name or "-", strategy,
                      selector, arms, str(d.revision), show_time(d.updated_at))
    Console().print(table)


@command.command("list")
@click.option("--active-only", is_flag=True)
def list_deployments(active_only: bool) -> None:
    """List deployments with what their arms resolve to now."""
    with registry() as reg:
        reply = reg.ListDeployments(pb.ListDeploymentsRequest(active_only=active_only))
    _print(list(reply.deployments))


@command.command("activate")
@click.argument("name")
@click.option("--off", is_flag=True, help="deactivate instead")
def activate(name: str, off: bool) -> None:
    """Switch a deployment on (or off with --off)."""
    with registry() as reg:
        stored = reg.ActivateDeployment(pb.ActivateDeploymentRequest(name=name, active=not off))
    _print([stored.deployment])


@command.command("assign")
@click.argument("deployment")
@click.argument("device_ids", nargs=-1, required=True)
def assign(deployment: str, device_ids: tuple[str, ...]) -> None:
    """Assign devices to DEPLOYMENT ('-' unassigns them)."""
    target = "" if deployment == "-" else deployment
    with registry() as reg:
        reply = reg.AssignDevices(pb.AssignDevicesRequest(deployment=target,
                                                          device_ids=list(device_ids)))
    for assignment in reply.assignments:
        click.echo(f"{assignment.device_id} -> {assignment.deployment or '(none)'}")


@command.command("history")
@click.argument("name", default="")
@click.option("--limit", type=int, default=50, show_default=True)
def history(name: str, limit: int) -> None:
    """The change history of one deployment (or of everything), newest first."""
    with registry() as reg:
        reply = reg.ListHistory(pb.ListHistoryRequest(
            subject=f"deployment/{name}" if name else "", limit=limit))
    table = Table(title=f"history of {name}" if name else "history")
    for column in ("#", "time", "actor", "subject", "action", "detail"):
        table.add_column(column)
    for record in reply.records:
        table.add_row(str(record.change_id), show_time(record.time), record.actor, record.subject,
                      record.action, record.detail)
    Console().print(table)
