"""ListDriftEvents and ListRuleStates over gRPC on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.drift.events import DriftEventRow, DriftEvents

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()


async def test_drift_events_are_listed_newest_first(stub, app) -> None:
    events = DriftEvents(app.pool)
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    for minutes, rule in ((0, "saturation_band"), (5, "concept_mae_ratio")):
        fired = now + timedelta(minutes=minutes)
        await events.open(DriftEventRow(
            event_id="", rule=rule, kind="covariate" if rule.startswith("sat") else "concept",
            deployment="parking", model_name="distance", model_version="3", state="open",
            values={"value": 71.0 + minutes}, threshold="outside [40.0, 60.0]",
            window_start=fired - timedelta(minutes=5), window_end=fired, fired_at=fired))
    first = (await events.list("parking"))[-1]
    await events.resolve(first.event_id, now + timedelta(minutes=9))

    reply = await stub.ListDriftEvents(pb.ListDriftEventsRequest(deployment="parking"), timeout=10)
    assert [e.rule for e in reply.events] == ["concept_mae_ratio", "saturation_band"]
    newest, oldest = reply.events
    assert newest.kind == observation_pb2.DRIFT_KIND_CONCEPT
    assert newest.state == observation_pb2.DRIFT_EVENT_STATE_OPEN
    assert newest.values["value"] == pytest.approx(76.0)
    assert oldest.state == observation_pb2.DRIFT_EVENT_STATE_RESOLVED
    assert oldest.resolved_at.ToDatetime(tzinfo=UTC) == now + timedelta(minutes=9)
    assert oldest.threshold == "outside [40.0, 60.0]"

    open_only = await stub.ListDriftEvents(pb.ListDriftEventsRequest(open_only=True), timeout=10)
    assert [e.rule for e in open_only.events] == ["concept_mae_ratio"]
    other = await stub.ListDriftEvents(pb.ListDriftEventsRequest(deployment="other"), timeout=10)
    assert list(other.events) == []


async def test_rule_states_need_the_monitor(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListRuleStates(pb.ListRuleStatesRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "EDGELOOP_REGISTRY_ADDR" in err.value.details()
