"""The forwarder keeps going when grpc.aio ends an Ingest call with CancelledError.

grpc.aio cancels a client-streaming call itself when writing one of its requests fails
(the features process killed mid-batch) and the awaiting code gets ``CancelledError``, not
an ``AioRpcError``. Once that ended the forwarder's task silently: the spool kept every
frame but nothing reached features again until the gateway restarted (the fault suite's
kill of features, a CI run of 2026-12-05). The call is stood in for here, because that
cancellation depends on where in a write the connection breaks; the spool is real.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.gateway.forwarder import Forwarder
from edgeloop.gateway.spool import Spool
from edgeloop.testing import free_port
from grpc import aio


class _Ingest:
    """Ingest as grpc.aio may behave: first cancelled under the caller, then answered."""

    def __init__(self, cancelled_calls: int, hang: bool = False) -> None:
        self.cancelled_calls, self.hang, self.calls = cancelled_calls, hang, 0
        self.received: list[bytes] = []

    async def __call__(self, requests: list[bytes], timeout: float) -> Any:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.calls <= self.cancelled_calls:
            raise asyncio.CancelledError()
        self.received.extend(requests)
        return fs_pb2.IngestResponse(stored=len(requests))


def _records(count: int) -> list[bytes]:
    return [fs_pb2.IngestRequest().SerializeToString() + bytes([i]) for i in range(count)]


async def _forwarder(tmp_path: Path, ingest: _Ingest) -> tuple[Forwarder, Spool, aio.Channel]:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    channel = aio.insecure_channel(f"127.0.0.1:{free_port()}")  # never called: stood in for
    forwarder = Forwarder(spool, channel, batch_size=8, interval_s=0.01)
    forwarder._ingest = ingest  # type: ignore[assignment]
    spool.append(_records(8))
    forwarder.notify_written(8)
    return forwarder, spool, channel


async def test_a_call_cancelled_under_the_forwarder_is_retried(tmp_path: Path) -> None:
    ingest = _Ingest(cancelled_calls=2)
    forwarder, spool, channel = await _forwarder(tmp_path, ingest)
    forwarder.start()
    try:
        async with asyncio.timeout(30):
            while forwarder.forwarded < 8:
                await asyncio.sleep(0.05)
    finally:
        await forwarder.stop()
        await channel.close()
    assert ingest.calls == 3, "two cancelled calls, then the batch went"
    assert spool.backlog_bytes == 0


async def test_stop_still_cancels_a_call_in_flight(tmp_path: Path) -> None:
    ingest = _Ingest(cancelled_calls=0, hang=True)
    forwarder, spool, channel = await _forwarder(tmp_path, ingest)
    forwarder.start()
    try:
        async with asyncio.timeout(30):
            while ingest.calls == 0:
                await asyncio.sleep(0.01)
            await forwarder.stop()
    finally:
        await channel.close()
    assert forwarder._task is not None and forwarder._task.done()
    assert spool.backlog_bytes > 0, "the batch stays spooled for the next start"
