"""Shared fixtures: an in-test EdgeGatewayService on loopback that can be stopped and restarted.

The real gateway is a separate service; these tests exercise the robot's stream client
against a real grpc.aio server speaking the same contract, with behaviour the tests
control (answer, refuse, crash mid-stream, stop answering).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import pytest
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.platform.tls import ServerTLS
from edgeloop.testing import free_port
from grpc import aio

DEVICE = "car-7"
TOKEN = "s3cret"
PREDICTION_OFFSET_MM = 10.0


@dataclass
class Received:
    """One frame as the gateway saw it."""

    session: str
    seq: int
    late: bool
    sensor_mm: float | None
    captured_at: datetime
    at: float = field(default_factory=time.monotonic)
    """When the gateway received it (monotonic seconds)."""


@dataclass
class GatewayState:
    """What the in-test gateway saw and how it behaves; shared across restarts."""

    received: list[Received] = field(default_factory=list)
    answered: set[tuple[str, int]] = field(default_factory=set)
    resent_after_answer: int = 0
    hellos: list[edge_pb2.Hello] = field(default_factory=list)
    crash_on_seqs: set[int] = field(default_factory=set)
    """Abort the stream (UNAVAILABLE) when one of these seqs arrives, without answering it."""
    refuse_seqs: set[int] = field(default_factory=set)
    spool_full_once: set[int] = field(default_factory=set)
    """Refuse these seqs once with SPOOL_FULL (not recorded), like a gateway whose spool is full."""
    spool_full_times: dict[int, int] = field(default_factory=dict)
    """Refuse these seqs with SPOOL_FULL this many times (a spool that stays full a while)."""
    not_recorded_once: set[int] = field(default_factory=set)
    """Answer these seqs once without recording them (``not_recorded``), like a gateway whose
    spool is full answering a live frame."""
    rate_limited_live: set[int] = field(default_factory=set)
    """Refuse these seqs with RATE_LIMITED when live (not recorded); late copies are taken."""
    silent: bool = False
    """Receive frames but never answer (a stuck gateway)."""
    sends_recorded: bool = True
    """Send Recorded messages to clients that ask for them (a gateway before them does not)."""
    never_record: set[int] = field(default_factory=set)
    """Answer these seqs but never record them (a gateway killed between answer and spool)."""
    recorded: list[tuple[str, int]] = field(default_factory=list)
    without_model: bool = False
    """Answer without a prediction, like a gateway whose device has no deployment."""

    def labelled_seqs(self, session: str) -> set[int]:
        return {r.seq for r in self.received if r.session == session and r.sensor_mm is not None}

    def recorded_seqs(self, session: str) -> set[int]:
        return {seq for name, seq in self.recorded if name == session}


class FakeGatewayServicer(gw_grpc.EdgeGatewayServiceServicer):
    """Answers each frame with sensor + 10 mm (or 100 mm without a sensor reading)."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def Stream(self, request_iterator: AsyncIterator[gw_pb2.StreamRequest],
                     context: aio.ServicerContext) -> AsyncIterator[gw_pb2.StreamResponse]:
        metadata = dict(context.invocation_metadata())
        authorised = metadata.get("authorization") == f"Bearer {TOKEN}"
        if not authorised or metadata.get("x-device-id") != DEVICE:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        session, acks = "", False
        async for request in request_iterator:
            if request.WhichOneof("kind") == "hello":
                session = request.hello.session_id
                acks = self.state.sends_recorded and "recorded_acks" in request.hello.capabilities
                self.state.hellos.append(request.hello)
                welcome = edge_pb2.Welcome(deployment="test", model_name="m",
                                           max_frame_bytes=1 << 20, gateway_id="gw-test",
                                           sends_recorded=acks)
                welcome.gateway_time.GetCurrentTime()  # as the gateway does
                yield gw_pb2.StreamResponse(welcome=welcome)
                continue
            response = await self._frame(session, request.frame, context)
            if response is not None:
                yield response
                recorded = self._record(session, request.frame, response)
                if acks and recorded:
                    yield gw_pb2.StreamResponse(recorded=edge_pb2.Recorded(seqs=[recorded]))

    def _record(self, session: str, frame: edge_pb2.Frame,
                response: gw_pb2.StreamResponse) -> int | None:
        """The seq of a labelled frame this answer recorded, like the real gateway's spool."""
        if response.WhichOneof("kind") != "prediction" or not frame.HasField("sensor_mm") \
                or frame.seq in self.state.never_record or response.prediction.not_recorded:
            return None
        self.state.recorded.append((session, frame.seq))
        return frame.seq

    async def _frame(self, session: str, frame: edge_pb2.Frame,
                     context: aio.ServicerContext) -> gw_pb2.StreamResponse | None:
        state = self.state
        sensor = frame.sensor_mm if frame.HasField("sensor_mm") else None
        state.received.append(Received(session, frame.seq, frame.late, sensor,
                                       frame.captured_at.ToDatetime(tzinfo=UTC)))
        if (session, frame.seq) in state.answered:
            state.resent_after_answer += 1
        if frame.seq in state.crash_on_seqs:
            state.crash_on_seqs.discard(frame.seq)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gateway crashed")
        if state.silent:
            return None
        if state.spool_full_times.get(frame.seq, 0) > 0:
            state.spool_full_times[frame.seq] -= 1
            state.spool_full_once.add(frame.seq)
        if frame.seq in state.spool_full_once:
            state.spool_full_once.discard(frame.seq)
            return gw_pb2.StreamResponse(error=edge_pb2.FrameError(
                seq=frame.seq, reason=edge_pb2.FRAME_ERROR_REASON_SPOOL_FULL, code=8,
                message="spool: full"))
        if frame.seq in state.rate_limited_live and not frame.late:
            return gw_pb2.StreamResponse(error=edge_pb2.FrameError(
                seq=frame.seq, reason=edge_pb2.FRAME_ERROR_REASON_RATE_LIMITED, code=8,
                message="rate: over the device's live frame limit"))
        state.answered.add((session, frame.seq))
        if frame.seq in state.refuse_seqs:
            return gw_pb2.StreamResponse(error=edge_pb2.FrameError(
                seq=frame.seq, reason=edge_pb2.FRAME_ERROR_REASON_INVALID_JPEG, code=3,
                message="jpeg: not an image"))
        distance = (sensor if sensor is not None else 90.0) + PREDICTION_OFFSET_MM
        not_recorded = frame.seq in state.not_recorded_once
        state.not_recorded_once.discard(frame.seq)
        if state.without_model:
            return gw_pb2.StreamResponse(prediction=edge_pb2.Prediction(
                seq=frame.seq, deployment="unassigned", not_recorded=not_recorded))
        return gw_pb2.StreamResponse(prediction=edge_pb2.Prediction(
            seq=frame.seq, distance_mm=distance, model_name="m", model_version="1",
            deployment="test", arm="stable", not_recorded=not_recorded))


class FakeGateway:
    """The in-test gateway on a fixed loopback port, so it can be stopped and restarted."""

    device = DEVICE
    token = TOKEN
    offset_mm = PREDICTION_OFFSET_MM

    def __init__(self, tls: ServerTLS | None = None) -> None:
        self.tls = tls
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.state = GatewayState()
        self._server: aio.Server | None = None

    async def start(self) -> None:
        server = aio.server()
        gw_grpc.add_EdgeGatewayServiceServicer_to_server(FakeGatewayServicer(self.state), server)
        bound = (server.add_secure_port(self.address, self.tls.grpc_credentials()) if self.tls
                 else server.add_insecure_port(self.address))
        if bound == 0:
            raise RuntimeError(f"cannot bind {self.address}")
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    """A started in-test gateway, stopped after the test."""
    gw = FakeGateway()
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """``await wait_until(predicate, timeout)``: poll until it holds, fail after timeout."""
    return _wait_until


async def _wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def mtls_gateway(tls_files) -> AsyncIterator[FakeGateway]:  # noqa: ANN001
    """The in-test gateway speaking only TLS and requiring a certificate of the test CA."""
    gw = FakeGateway(tls=tls_files.server_tls(mutual=True))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()
