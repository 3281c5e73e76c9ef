"""Grafana's webhook payloads: alerts firing and resolved, each malformed field named."""

from __future__ import annotations

from typing import Any

import pytest
from edgeloop.platform.grafana_alerts import BadPayload, bearer_matches, parse_notification


def _alert(**changes: Any) -> dict[str, Any]:
    # The shape Grafana 11's webhook contact point sends (fields we do not read left out).
    alert = {"status": "firing", "fingerprint": "a1b2c3", "startsAt": "2026-12-06T23:40:00Z",
             "endsAt": "0001-01-01T00:00:00Z",
             "labels": {"alertname": "gateway_spool_filling", "gateway": "vm-1234",
                        "audience": "operators"},
             "annotations": {"summary": "vm-1234: spool 93 % full"},
             "values": {"A": 93.2, "C": 1}}
    alert.update(changes)
    return alert


def test_firing_and_resolved_alerts_with_their_labels_and_annotations() -> None:
    alerts = parse_notification({"status": "firing", "receiver": "edgeloop-operators",
                                 "alerts": [_alert(), _alert(status="resolved",
                                                             fingerprint="d4")]})
    assert [(a.name, a.status, a.firing, a.fingerprint) for a in alerts] == [
        ("gateway_spool_filling", "firing", True, "a1b2c3"),
        ("gateway_spool_filling", "resolved", False, "d4")]
    assert alerts[0].labels["gateway"] == "vm-1234"
    assert alerts[0].annotations == {"summary": "vm-1234: spool 93 % full"}
    assert alerts[0].starts_at == "2026-12-06T23:40:00Z"
    assert alerts[0].ends_at == "0001-01-01T00:00:00Z"


def test_an_alert_without_annotations_or_end_is_taken() -> None:
    alert = _alert()
    del alert["annotations"], alert["endsAt"]
    (parsed,) = parse_notification({"alerts": [alert]})
    assert parsed.annotations == {} and parsed.ends_at == ""


@pytest.mark.parametrize(("payload", "where"), [
    ([], "alerts: expected a list"),
    ({"alerts": {}}, "alerts: expected a list"),
    ({"alerts": ["x"]}, r"alerts\[0\].labels: expected an object"),
    ({"alerts": [_alert(), _alert(labels=[])]}, r"alerts\[1\].labels: expected an object"),
    ({"alerts": [_alert(status="")]}, r"alerts\[0\].status: expected a non-empty string"),
    ({"alerts": [_alert(fingerprint=7)]}, r"alerts\[0\].fingerprint"),
    ({"alerts": [_alert(startsAt=None)]}, r"alerts\[0\].startsAt"),
    ({"alerts": [_alert(labels={"gateway": "g"})]}, r"alerts\[0\].labels.alertname"),
    ({"alerts": [_alert(annotations="x")]}, r"alerts\[0\].annotations: expected an object"),
    ({"alerts": [_alert(endsAt=5)]}, r"alerts\[0\].endsAt: expected a string"),
    ({"alerts": [_alert(fingerprint="a\x00")]}, r"alerts\[0\].fingerprint: contains a NUL"),
    ({"alerts": [_alert(labels={"alertname": "x", "model": "m\x00"})]},
     r"alerts\[0\].labels.model: contains a NUL"),
    ({"alerts": [_alert(annotations={"summary": "\x00"})]},
     r"alerts\[0\].annotations.summary: contains a NUL"),
])
def test_a_malformed_payload_names_its_field(payload: Any, where: str) -> None:
    with pytest.raises(BadPayload, match=where):
        parse_notification(payload)


def test_the_bearer_secret_must_match_and_exist() -> None:
    assert bearer_matches("Bearer s3cret", "s3cret")
    assert not bearer_matches("Bearer wrong", "s3cret")
    assert not bearer_matches("s3cret", "s3cret"), "the scheme is required"
    assert not bearer_matches("Basic s3cret", "s3cret")
    assert not bearer_matches("Bearer ", ""), "no secret configured: nothing is accepted"
    assert not bearer_matches("", "")
