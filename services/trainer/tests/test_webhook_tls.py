"""The Grafana webhook over HTTPS with the trainer's certificate; plaintext HTTP is refused.

The webhook runs on its real aiohttp server with the real alert store (PostgreSQL); the
sweep manager behind it is replaced by a recorder that stores the sweep as the manager does,
since what is under test here is the transport (test_webhook.py drives the whole trainer
over plain HTTP).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator

import pytest
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2
from edgeloop.testing.tls import TLSFiles
from edgeloop.trainer.store import SweepStore
from edgeloop.trainer.webhook import PATH, GrafanaWebhook

SECRET = "webhook-tls-secret"
BODY = json.dumps({"alerts": [{"status": "firing", "fingerprint": "fp-tls",
                               "startsAt": "2026-12-01T10:00:00Z",
                               "labels": {"alertname": "drift", "model": "m"}}]}).encode()


@pytest.fixture
async def webhook(database_url: str, tls_files: TLSFiles) -> AsyncIterator[tuple[str, list]]:
    store = SweepStore(database_url)
    await store.open()
    submitted: list[trainer_service_pb2.StartSweepRequest] = []

    async def submit(request: trainer_service_pb2.StartSweepRequest) -> sweep_pb2.Sweep:
        # What the manager does first: record the sweep (the alert row points at it).
        submitted.append(request)
        sweep = sweep_pb2.Sweep(sweep_id=f"sweep-{uuid.uuid4().hex[:8]}",
                                model_name=request.model_name, trigger=request.trigger,
                                state=sweep_pb2.SWEEP_STATE_QUEUED)
        await store.insert(sweep, request)
        return sweep

    hook = GrafanaWebhook(store, submit, SECRET, tls=tls_files.server_tls())
    address = await hook.start("127.0.0.1:0")
    try:
        yield address, submitted
    finally:
        await hook.stop()
        await store.close()


def _post(url: str, context: ssl.SSLContext | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=BODY, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"})
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return response.status, json.loads(response.read())


async def test_webhook_answers_https_with_the_stack_ca(webhook: tuple[str, list],
                                                       tls_files: TLSFiles) -> None:
    address, submitted = webhook
    context = tls_files.client_tls().ssl_context()
    status, answer = await asyncio.to_thread(_post, f"https://{address}{PATH}", context)
    assert status == 200 and answer["results"][0]["result"] == "started"
    assert [r.trigger for r in submitted] == ["grafana:drift"]


async def test_webhook_refuses_plain_http_and_unverified_clients(webhook: tuple[str, list],
                                                                 tls_files: TLSFiles) -> None:
    address, submitted = webhook
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        await asyncio.to_thread(_post, f"http://{address}{PATH}", None)
    # A client that does not know the stack's CA cannot verify the webhook's certificate.
    stranger = ssl.create_default_context(cafile=str(tls_files.stranger.cert))
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.to_thread(_post, f"https://{address}{PATH}", stranger)
    assert submitted == [], "nothing reached the sweep manager"
