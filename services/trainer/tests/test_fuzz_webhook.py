"""Fuzzing the Grafana webhook (Hypothesis): arbitrary bodies and Grafana-shaped payloads.

The trainer's real webhook (aiohttp on loopback) with its real alert store (PostgreSQL)
gets arbitrary bytes, arbitrary JSON and Grafana payloads with values replaced by
arbitrary ones. Properties: every POST is answered within its deadline and never with a
5xx; a malformed payload is a 400 whose error names the field; every firing alert gets a
result; the webhook still answers afterwards.

The sweep service behind it is a stand-in that refuses every sweep the way the real one
refuses a deployment without enough data (FAILED_PRECONDITION): starting real sweeps
needs Ray and is not what is fuzzed here; the webhook-to-sweep path is tested on the
running trainer in test_webhook.py. Examples are derandomized and few.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.contracts.trainer.v1 import trainer_service_pb2 as pb
from edgeloop.platform.errors import FailedPrecondition
from edgeloop.trainer.store import SweepStore
from edgeloop.trainer.webhook import PATH, GrafanaWebhook
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

SECRET = "fuzz-webhook-secret"
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest_asyncio.fixture
async def webhook(database_url: str) -> AsyncIterator[tuple[str, list[pb.StartSweepRequest]]]:
    """The webhook on loopback; yields its URL and the sweep requests it made."""
    store = SweepStore(database_url)
    await store.open()
    asked: list[pb.StartSweepRequest] = []

    async def refuse(request: pb.StartSweepRequest) -> sweep_pb2.Sweep:
        asked.append(request)
        raise FailedPrecondition("data: the selection matches 0 labelled observations; "
                                 "a sweep needs at least 30")

    hook = GrafanaWebhook(store, refuse, SECRET)
    try:
        await hook.start("127.0.0.1:0")
        yield f"http://{hook.address}{PATH}", asked
    finally:
        await hook.stop()
        await store.close()


def grafana_payload(fingerprint: Any, starts_at: Any, status: Any) -> dict[str, Any]:
    """A Grafana alerting webhook notification with one alert (hand-written shape)."""
    return {"receiver": "edgeloop-trainer", "status": status, "orgId": 1, "version": "1",
            "groupKey": "{}", "commonLabels": {}, "title": "[FIRING:1] x",
            "alerts": [{"status": status, "labels": {"alertname": "saturation-out-of-band",
                                                     "deployment": "d", "model": "m"},
                        "annotations": {}, "startsAt": starts_at,
                        "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint}]}


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10)
texts = st.one_of(st.text(min_size=1, max_size=30), st.just(""),
                  st.text(min_size=500, max_size=600))


@st.composite
def grafana_like(draw: Any) -> Any:
    """A Grafana payload with some values replaced by arbitrary ones."""
    payload = grafana_payload(draw(texts), draw(texts),
                              draw(st.sampled_from(["firing", "resolved", "", "other"])))
    alert = payload["alerts"][0]
    for label in ("alertname", "deployment", "model"):
        alert["labels"][label] = draw(st.one_of(texts, json_values))
    for key in draw(st.lists(st.sampled_from(["status", "fingerprint", "startsAt", "labels"]),
                             max_size=2, unique=True)):
        alert[key] = draw(json_values)
    if draw(st.booleans()):
        payload["alerts"] = draw(st.one_of(json_values, st.just([alert, alert])))
    return payload


def post(url: str, body: bytes, secret: str | None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    if secret is not None:
        request.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def check_post(url: str, body: bytes) -> None:
    status, answer = post(url, body, SECRET)
    assert status < 500, (status, answer)
    if status == 400:
        error = answer["error"]
        assert error.startswith("malformed Grafana payload: "), error
        assert error.removeprefix("malformed Grafana payload: ").split(":")[0], error
    else:
        assert status == 200, (status, answer)
        firing = _firing_count(body)
        assert len(answer["results"]) == firing, answer
        for result in answer["results"]:
            assert result["result"] in {"duplicate", "refused"}, result
            if result["result"] == "refused":
                assert result["reason"].startswith("data: "), result
    assert post(url, b"{}", None)[0] == 401  # still answering


def _firing_count(body: bytes) -> int:
    alerts = json.loads(body)["alerts"]
    return sum(1 for alert in alerts if alert["status"] == "firing")


async def test_arbitrary_webhook_bodies_are_answered_never_crash(webhook) -> None:
    url, asked = webhook

    @FUZZ
    @given(st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        grafana_like().map(lambda p: json.dumps(p).encode()),
    ))
    @example(json.dumps(grafana_payload("fp-1", "2026-11-26T10:00:00Z", "firing")).encode())
    # Found by this test: a NUL in a string failed the alert's INSERT with a 500.
    @example(json.dumps(grafana_payload("fp\x00nul", "2026-11-26T10:00:00Z", "firing")).encode())
    @example(b"\xff\xfe{}")
    @example(b'{"alerts": [{"status": "firing", "labels": {"alertname": "a"}, '
             b'"fingerprint": "f", "startsAt": "s"}]} trailing')
    def fuzz(body: bytes) -> None:
        check_post(url, body)

    await asyncio.to_thread(fuzz)
    assert asked, "some firing alert reached the sweep service"
