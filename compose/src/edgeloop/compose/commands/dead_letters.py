"""`edgeloop dead-letters`: observations features refused, kept whole; list and replay them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
import grpc
from edgeloop.compose.endpoints import call_error, channel
from edgeloop.contracts.features.v1 import dead_letter_pb2 as pb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as pb_grpc
from edgeloop.platform import DEFAULT_DEADLINE_S
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

REPLAY_DEADLINE_S = 600.0
"""A replay re-measures every image it stores."""


@contextmanager
def _features() -> Iterator[pb_grpc.FeatureStoreServiceStub]:
    with channel("features") as opened:
        try:
            yield pb_grpc.FeatureStoreServiceStub(opened)
        except grpc.RpcError as exc:
            raise call_error("features", exc) from exc


@click.group("dead-letters")
def command() -> None:
    """Observations features refused (kept whole, never dropped): list and replay them."""


@command.command("list")
@click.option("--deployment", default="", help="Only those sent for this deployment.")
@click.option("--device", "device_id", default="", help="Only this device's.")
@click.option("--limit", default=50, show_default=True, help="How many to show.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="json: one machine-readable document.")
def list_command(deployment: str, device_id: str, limit: int, output: str) -> None:
    """List dead letters, newest first, with why they were refused."""
    with _features() as stub:
        reply = stub.ListDeadLetters(pb.ListDeadLettersRequest(
            deployment=deployment, device_id=device_id, limit=limit), timeout=DEFAULT_DEADLINE_S)
    if output == "json":
        click.echo(json.dumps(json_format.MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True),
            indent=2))
        return
    table = Table(title=f"dead letters ({reply.total} in all, newest first)")
    for column in ("id", "observation", "device", "deployment", "tries", "last refused"):
        table.add_column(column, overflow="fold")
    table.add_column("reason", overflow="fold", ratio=1)
    for letter in reply.dead_letters:
        table.add_row(str(letter.dead_letter_id), letter.observation_id, letter.device_id,
                      letter.deployment or "-", str(letter.attempts),
                      letter.last_refused_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
                      letter.reason)
    Console().print(table)


@command.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--deployment", default="",
              help="File them under this deployment (and its data group) before storing.")
@click.option("--data-group", default="", help="File them under this data group.")
def replay(ids: tuple[int, ...], replay_all: bool, deployment: str, data_group: str) -> None:
    """Ingest dead letters IDS (or --all) again; stored ones leave the store."""
    if bool(ids) == replay_all:
        raise click.UsageError("name dead-letter IDS or pass --all (not both)")
    with _features() as stub:
        reply = stub.ReplayDeadLetters(pb.ReplayDeadLettersRequest(
            dead_letter_ids=list(ids), deployment=deployment, data_group=data_group),
            timeout=REPLAY_DEADLINE_S)
    click.echo(f"stored {reply.stored}, already stored {reply.duplicates}, "
               f"refused again {reply.still_refused}")
    for letter_id, reason in sorted(reply.reasons.items()):
        click.echo(f"  {letter_id}: {reason}")
    if reply.still_refused:
        raise SystemExit(1)
