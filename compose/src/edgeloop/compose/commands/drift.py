"""`edgeloop drift`: drift events and the live value of every rule."""

from __future__ import annotations

import grpc
import click
from rich.console import Console
from rich.table import Table

from edgeloop.compose.endpoints import call_error, channel
from edgeloop.contracts.features.v1 import (
    feature_store_service_pb2 as pb,
    feature_store_service_pb2_grpc as pb_grpc,
    observation_pb2,
)
from edgeloop.platform import DEFAULT_DEADLINE_S

_STATUS_STYLE = {"ok": "green", "pending": "yellow", "firing": "red", "cooldown": "cyan"}


def _kind(value: int) -> str:
    return observation_pb2.DriftKind.Name(value).removeprefix("DRIFT_KIND_").lower()


def _events_table(events: list[observation_pb2.DriftEvent]) -> Table:
    table = Table(title="drift events (newest first)")
    for column in ("fired", "deployment", "rule", "kind", "value", "threshold", "model", "state",
                   "sweep", "note"):
        table.add_column(column, overflow="fold")
    for event in events:
        state = observation_pb2.DriftEventState.Name(event.state).removeprefix("DRIFT_EVENT_STATE_")
        table.add_row(event.fired_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"), event.deployment,
                      event.rule, _kind(event.kind), f"{event.values.get('value', float('nan')):.3g}",
                      event.threshold, f"{event.model_name}@{event.model_version}",
                      state.lower(), event.sweep_id, event.note)
    return table


def _states_table(states: list[observation_pb2.RuleState]) -> Table:
    table = Table(title="rules now")
    for column in ("deployment", "rule", "kind", "value", "threshold", "samples", "status"):
        table.add_column(column)
    for state in states:
        style = _STATUS_STYLE.get(state.status, "dim")
        value = f"{state.value:.3g}" if state.HasField("value") else "-"
        table.add_row(state.deployment, state.rule, _kind(state.kind), value, state.threshold,
                      str(state.samples), f"[{style}]{state.status}[/{style}]")
    return table


@click.command("drift")
@click.option("--deployment", default="", help="Only this deployment.")
@click.option("--open", "open_only", is_flag=True, help="Only open events.")
@click.option("--limit", default=20, show_default=True, help="Events to show.")
def command(deployment: str, open_only: bool, limit: int) -> None:
    """List drift events and the live value of every drift rule per active deployment."""
    with channel("features") as opened:
        stub = pb_grpc.FeatureStoreServiceStub(opened)
        try:
            events = stub.ListDriftEvents(pb.ListDriftEventsRequest(
                deployment=deployment, open_only=open_only, limit=limit), timeout=DEFAULT_DEADLINE_S)
            states = stub.ListRuleStates(pb.ListRuleStatesRequest(deployment=deployment),
                                         timeout=DEFAULT_DEADLINE_S)
        except grpc.RpcError as exc:
            raise call_error("features", exc) from exc
    console = Console()
    console.print(_events_table(list(events.events)))
    console.print(_states_table(list(states.states)))
