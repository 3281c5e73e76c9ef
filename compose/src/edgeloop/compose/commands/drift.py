"""`edgeloop drift`: drift events and the live value of every rule."""

from __future__ import annotations

import click
import grpc
from edgeloop.compose.endpoints import call_error, channel
from edgeloop.compose.views import Listing, output_option, show_listings, timestamp
from edgeloop.compose.views import short_time as show_iso
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as pb_grpc
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.platform import DEFAULT_DEADLINE_S

_STATUS_STYLE = {"ok": "green", "pending": "yellow", "firing": "red", "cooldown": "cyan"}


def _kind(value: int) -> str:
    return observation_pb2.DriftKind.Name(value).removeprefix("DRIFT_KIND_").lower()


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _events(events: list[observation_pb2.DriftEvent]) -> Listing:
    rows = [{"fired": timestamp(e.fired_at), "deployment": e.deployment, "rule": e.rule,
             "kind": _kind(e.kind), "value": e.values.get("value"), "threshold": e.threshold,
             "model": f"{e.model_name}@{e.model_version}",
             "state": observation_pb2.DriftEventState.Name(e.state)
             .removeprefix("DRIFT_EVENT_STATE_").lower(),
             "resolved": timestamp(e.resolved_at), "sweep": e.sweep_id or None,
             "note": e.note or None, "event_id": e.event_id}
            for e in events]
    return Listing("events", "drift events (newest first)",
                   ["fired", "deployment", "rule", "kind", "value", "threshold", "model",
                    "state", "sweep", "note"], rows,
                   {"fired": show_iso, "value": _number})


def _states(states: list[observation_pb2.RuleState]) -> Listing:
    rows = [{"deployment": s.deployment, "rule": s.rule, "kind": _kind(s.kind),
             "value": s.value if s.HasField("value") else None, "threshold": s.threshold,
             "samples": s.samples, "status": s.status, "evaluated": timestamp(s.evaluated_at)}
            for s in states]

    def status(value: str) -> str:
        style = _STATUS_STYLE.get(value, "dim")
        return f"[{style}]{value}[/{style}]"

    return Listing("rules", "rules now",
                   ["deployment", "rule", "kind", "value", "threshold", "samples", "status"],
                   rows, {"value": _number, "status": status})


@click.command("drift")
@click.option("--deployment", default="", help="Only this deployment.")
@click.option("--open", "open_only", is_flag=True, help="Only open events.")
@click.option("--limit", default=20, show_default=True, help="Events to show.")
@output_option
def command(deployment: str, open_only: bool, limit: int, output: str) -> None:
    """List drift events and the live value of every drift rule per active deployment.

    JSON: {"events": [...], "rules": [...]}.
    """
    with channel("features") as opened:
        stub = pb_grpc.FeatureStoreServiceStub(opened)
        try:
            events = stub.ListDriftEvents(pb.ListDriftEventsRequest(
                deployment=deployment, open_only=open_only, limit=limit),
                timeout=DEFAULT_DEADLINE_S)
            states = stub.ListRuleStates(pb.ListRuleStatesRequest(deployment=deployment),
                                         timeout=DEFAULT_DEADLINE_S)
        except grpc.RpcError as exc:
            raise call_error("features", exc) from exc
    show_listings([_events(list(events.events)), _states(list(states.states))], output)
