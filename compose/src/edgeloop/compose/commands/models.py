"""`edgeloop models`: list versions, promote through the gate, roll back (registry)."""

from __future__ import annotations

import click
from edgeloop.compose.commands._registry import registry, show_time
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from rich.console import Console
from rich.table import Table

LINEAGE = ("sweep_id", "dataset_snapshot", "trigger", "git_sha")


@click.group("models")
def command() -> None:
    """Registered model versions and their aliases (MLflow registry through the registry)."""


@command.command("list")
@click.argument("model", default="distance")
def list_versions(model: str) -> None:
    """A model's versions, newest first, with metrics, aliases and lineage."""
    with registry() as reg:
        reply = reg.ListModelVersions(pb.ListModelVersionsRequest(model_name=model))
    table = Table(title=f"model {model}")
    for column in ("version", "aliases", "holdout MAE", "val MAE", "lineage", "created", "run"):
        table.add_column(column)
    for v in reply.versions:
        metric = {k: f"{v.metrics[k]:.2f}" for k in ("holdout_mae_mm", "val_mae_mm")
                  if k in v.metrics}
        lineage = " ".join(f"{k}={v.tags[k]}" for k in LINEAGE if k in v.tags)
        table.add_row(v.version, ", ".join(v.aliases) or "-", metric.get("holdout_mae_mm", "-"),
                      metric.get("val_mae_mm", "-"), lineage or "-", show_time(v.created_at),
                      v.run_id or "-")
    Console().print(table)


@command.command("promote")
@click.argument("model")
@click.argument("version")
@click.option("--alias", default="champion", show_default=True)
@click.option("--force", is_flag=True, help="skip the gate")
def promote(model: str, version: str, alias: str, force: bool) -> None:
    """Move ALIAS to VERSION if it passes the gate; exit code 1 when refused."""
    with registry() as reg:
        reply = reg.PromoteModelVersion(pb.PromoteModelVersionRequest(
            model_name=model, version=version, alias=alias, force=force))
    click.echo(reply.reason)
    if not reply.promoted:
        raise SystemExit(1)
    click.echo(f"{model}@{alias}: {reply.previous_version or '(none)'} -> {version}")


@command.command("rollback")
@click.argument("model")
@click.option("--alias", default="champion", show_default=True)
def rollback(model: str, alias: str) -> None:
    """Move ALIAS back to the version it pointed at before."""
    with registry() as reg:
        reply = reg.RollbackModel(pb.RollbackModelRequest(model_name=model, alias=alias))
    click.echo(f"{model}@{alias}: {reply.rolled_back_from} -> {reply.version.version}")
