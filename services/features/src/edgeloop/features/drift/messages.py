"""Drift events and rule states as the FeatureStoreService contract sends them."""

from __future__ import annotations

from datetime import datetime

from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.features.drift.events import DriftEventRow
from edgeloop.features.drift.monitor import RuleTrack
from google.protobuf.timestamp_pb2 import Timestamp

_KINDS = {"covariate": observation_pb2.DRIFT_KIND_COVARIATE,
          "label": observation_pb2.DRIFT_KIND_LABEL,
          "concept": observation_pb2.DRIFT_KIND_CONCEPT}
_STATES = {"open": observation_pb2.DRIFT_EVENT_STATE_OPEN,
           "resolved": observation_pb2.DRIFT_EVENT_STATE_RESOLVED,
           "superseded": observation_pb2.DRIFT_EVENT_STATE_SUPERSEDED}


def _stamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def event_message(event: DriftEventRow) -> observation_pb2.DriftEvent:
    """A stored event as a ``DriftEvent`` message."""
    return observation_pb2.DriftEvent(
        event_id=event.event_id, rule=event.rule, kind=_KINDS.get(event.kind, 0),
        deployment=event.deployment, model_name=event.model_name, model_version=event.model_version,
        state=_STATES.get(event.state, 0), values=event.values, threshold=event.threshold,
        window_start=_stamp(event.window_start), window_end=_stamp(event.window_end),
        fired_at=_stamp(event.fired_at), resolved_at=_stamp(event.resolved_at),
        sweep_id=event.sweep_id, sweep_trace_id=event.sweep_trace_id, note=event.note)


def state_message(track: RuleTrack) -> observation_pb2.RuleState:
    """A rule's live state as a ``RuleState`` message."""
    signal = track.signal
    state = observation_pb2.RuleState(
        rule=track.rule.name, kind=_KINDS[track.rule.kind], deployment=track.deployment,
        threshold=signal.threshold if signal else "", samples=signal.samples if signal else 0,
        status=track.status, evaluated_at=_stamp(track.evaluated_at))
    if signal is not None and signal.value is not None:
        state.value = signal.value
    return state
