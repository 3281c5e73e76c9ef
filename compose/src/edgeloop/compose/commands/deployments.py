"""`edgeloop deployments`: create, list, activate, assign devices, show history (registry)."""

from __future__ import annotations

import click
from edgeloop.compose.commands._registry import parse_selector, registry, show_selector
from edgeloop.compose.views import Listing, output_option, show_listings, timestamp
from edgeloop.compose.views import short_time as show_iso
from edgeloop.contracts.registry.v1 import deployment_pb2 as dpb
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb

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


def _record(d: dpb.Deployment) -> dict:
    return {"name": d.name, "active": d.active, "model": d.model_name,
            "strategy": dpb.Strategy.Name(d.strategy).removeprefix("STRATEGY_").lower(),
            "selector": show_selector(d.selector),
            "challenger": show_selector(d.challenger) if d.HasField("challenger") else None,
            "canary_fraction": d.canary_fraction if d.strategy == dpb.STRATEGY_CANARY else None,
            "arms": {a.arm: a.model_version for a in d.resolved},
            "revision": d.revision, "updated": timestamp(d.updated_at)}


def _selects(record: dict) -> str:
    text = record["selector"]
    if record["challenger"]:
        text += f" / {record['challenger']}"
    if record["canary_fraction"] is not None:
        text += f" ({record['canary_fraction']:.0%})"
    return text


def _print(deployments: list[dpb.Deployment], output: str = "table") -> None:
    rows = [_record(d) for d in deployments]
    if output == "table":
        for row in rows:
            row["selects"] = _selects(row)
    arms = ", ".join
    show_listings([Listing("deployments", "deployments",
                           ["name", "active", "model", "strategy", "selects", "arms", "revision",
                            "updated"] if output == "table" else [], rows,
                           {"arms": lambda a: arms(f"{k}={v or '-'}" for k, v in a.items()) or "-",
                            "updated": show_iso})], output)


@command.command("list")
@click.option("--active-only", is_flag=True)
@output_option
def list_deployments(active_only: bool, output: str) -> None:
    """List deployments with what their arms resolve to now."""
    with registry() as reg:
        reply = reg.ListDeployments(pb.ListDeploymentsRequest(active_only=active_only))
    _print(list(reply.deployments), output)


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
@output_option
def history(name: str, limit: int, output: str) -> None:
    """The change history of one deployment (or of everything), newest first."""
    with registry() as reg:
        reply = reg.ListHistory(pb.ListHistoryRequest(
            subject=f"deployment/{name}" if name else "", limit=limit))
    rows = [{"change": r.change_id, "time": timestamp(r.time), "actor": r.actor,
             "subject": r.subject, "action": r.action, "detail": r.detail}
            for r in reply.records]
    show_listings([Listing("history", f"history of {name}" if name else "history",
                           ["change", "time", "actor", "subject", "action", "detail"], rows,
                           {"time": show_iso})], output)
