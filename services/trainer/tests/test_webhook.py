"""The Grafana webhook against the running trainer (real HTTP, real PostgreSQL dedup).

Grafana itself is not installed here: the payload below is the shape its webhook
contact point sends (alerts[].status/labels/fingerprint/startsAt), written by hand.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import grpc
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.contracts.trainer.v1 import trainer_service_pb2 as pb

SECRET = "grafana-webhook-secret-for-tests"


def grafana_payload(fingerprint: str, starts_at: str, status: str = "firing") -> dict[str, Any]:
    """A Grafana alerting webhook notification with one alert."""
    return {
        "receiver": "edgeloop-trainer",
        "status": status,
        "orgId": 1,
        "version": "1",
        "groupKey": '{}:{alertname="saturation-out-of-band"}',
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": "saturation-out-of-band"},
        "commonLabels": {"alertname": "saturation-out-of-band"},
        "commonAnnotations": {},
        "externalURL": "http://grafana.local/",
        "title": "[FIRING:1] saturation-out-of-band",
        "alerts": [
            {
                "status": status,
                "labels": {
                    "alertname": "saturation-out-of-band",
                    "deployment": "garage-beige",
                    "model": "webhook-model",
                },
                "annotations": {"summary": "5-minute mean saturation outside [40, 60]"},
                "startsAt": starts_at,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://grafana.local/alerting/grafana/abc/view",
                "fingerprint": fingerprint,
                "values": {"A": 71.5},
            }
        ],
    }


def post(url: str, body: bytes, secret: str | None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    if secret is not None:
        request.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def sweeps_of(stack: Any, model: str) -> list[sweep_pb2.Sweep]:
    with grpc.insecure_channel(stack.trainer.address) as channel:
        return list(
            stack.trainer_stub(channel)
            .ListSweeps(pb.ListSweepsRequest(model_name=model), timeout=30)
            .sweeps
        )


def test_grafana_alert_starts_one_sweep_and_refuses_bad_calls(stack: Any) -> None:
    body = json.dumps(grafana_payload("fp-1", "2026-11-26T10:00:00Z")).encode()
    assert post(stack.webhook_url, body, None)[0] == 401
    assert post(stack.webhook_url, body, "wrong-secret")[0] == 401
    assert sweeps_of(stack, "webhook-model") == [], "refused calls start nothing"
    status, answer = post(stack.webhook_url, b'{"alerts": [{"status": "firing"}]}', SECRET)
    assert status == 400 and "alerts[0].labels" in answer["error"]
    assert post(stack.webhook_url, b"not json", SECRET)[0] == 400

    status, answer = post(stack.webhook_url, body, SECRET)
    assert status == 200 and answer["results"][0]["result"] == "started", answer
    status, again = post(stack.webhook_url, body, SECRET)
    assert status == 200 and again["results"][0]["result"] == "duplicate"
    resolved = json.dumps(grafana_payload("fp-1", "2026-11-26T10:00:00Z", "resolved")).encode()
    assert post(stack.webhook_url, resolved, SECRET)[1]["results"] == []

    sweeps = sweeps_of(stack, "webhook-model")
    assert len(sweeps) == 1
    sweep = sweeps[0]
    assert sweep.sweep_id == answer["results"][0]["sweep_id"]
    assert sweep.trigger == "grafana:saturation-out-of-band"
    assert list(sweep.data.deployments) == ["garage-beige"] and sweep.deployment == "garage-beige"
    assert sweep.warm_start_version == "", "webhook-model has no champion: trained from scratch"
    with grpc.insecure_channel(stack.trainer.address) as channel:
        # the sweep itself is the other tests' business; stop it to free the CPUs
        stopped = (
            stack.trainer_stub(channel)
            .CancelSweep(pb.CancelSweepRequest(sweep_id=sweep.sweep_id), timeout=200)
            .sweep
        )
    assert stopped.state == sweep_pb2.SWEEP_STATE_CANCELLED


def test_a_new_occurrence_of_the_same_alert_starts_another_sweep(stack: Any) -> None:
    before = len(sweeps_of(stack, "webhook-model"))
    body = json.dumps(grafana_payload("fp-1", "2026-11-26T12:00:00Z")).encode()
    status, answer = post(stack.webhook_url, body, SECRET)
    assert status == 200 and answer["results"][0]["result"] == "started"
    assert len(sweeps_of(stack, "webhook-model")) == before + 1
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stack.trainer_stub(channel).CancelSweep(
            pb.CancelSweepRequest(sweep_id=answer["results"][0]["sweep_id"]), timeout=200
        )
