"""`edgeloop models`: list versions, promote through the gate, roll back (registry)."""

from __future__ import annotations

import click
import grpc
from edgeloop.compose.commands._registry import registry
from edgeloop.compose.views import Listing, output_option, show_listings, timestamp
from edgeloop.compose.views import short_time as show_iso
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb

LINEAGE = ("sweep_id", "dataset_snapshot", "trigger", "git_sha")


@click.group("models")
def command() -> None:
    """Registered model versions and their aliases (MLflow registry through the registry)."""


@command.command("list")
@click.argument("model", default="distance")
@output_option
def list_versions(model: str, output: str) -> None:
    """A model's versions, newest first, with metrics, aliases and lineage."""
    with registry() as reg:
        try:
            reply = reg.ListModelVersions(pb.ListModelVersionsRequest(model_name=model))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            raise click.ClickException(
                f"no model {model!r} is registered: a sweep registers its versions (`edgeloop "
                "sweeps start`); `edgeloop demo` trains the first") from exc
    rows = [{"version": v.version, "aliases": list(v.aliases),
             "holdout_mae_mm": v.metrics.get("holdout_mae_mm"),
             "val_mae_mm": v.metrics.get("val_mae_mm"),
             "lineage": {k: v.tags[k] for k in LINEAGE if k in v.tags},
             "created": timestamp(v.created_at), "run": v.run_id or None}
            for v in reply.versions]
    show_listings([Listing("versions", f"model {model}",
                           ["version", "aliases", "holdout_mae_mm", "val_mae_mm", "lineage",
                            "created", "run"], rows,
                           {"holdout_mae_mm": _mm, "val_mae_mm": _mm, "created": show_iso,
                            "lineage": lambda t: " ".join(f"{k}={v}" for k, v in t.items())
                            or "-"})], output)


def _mm(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


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
