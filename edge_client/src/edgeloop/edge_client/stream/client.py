"""The stream client: one bidirectional gRPC stream per drive session, kept alive.

Delivery rules (what the gateway can rely on):

- The first message of every stream is a ``Hello`` with the session id; frames follow in
  strictly increasing ``seq`` order on each stream.
- A frame is *answered* when a ``Prediction`` or ``FrameError`` with its seq arrives; the
  result goes to the caller at once. An unlabelled frame is then done. A labelled frame is
  done once the gateway says it is durably recorded (a ``Recorded`` naming its seq, asked
  for with the ``recorded_acks`` capability), or at its answer when the frame is not
  recorded (a FrameError without ``recorded``) or the gateway sends no Recorded messages.
- Labelled frames (with a sensor reading) are never lost: frames that were not done when
  the stream broke (in flight, or answered but not yet recorded: the gateway may have been
  killed in between), and frames captured while disconnected, go to the bounded on-disk
  :class:`OfflineBuffer` and are sent again after reconnecting, with the same seq and
  ``late = true``. The gateway sees a labelled frame more than once only when its answer
  or its Recorded was lost in transit; the copy gets the same observation id, so the
  feature store keeps one.
- A labelled frame refused with ``SPOOL_FULL`` (the gateway could not record it) or
  ``RATE_LIMITED`` (sent faster than the device's live frame rate), or answered with
  ``not_recorded`` (answered, but the gateway's spool was full), is not done either: it
  is kept on disk and, ``refused_retry_s`` later, the stream is reopened gracefully
  (in-flight frames answered first) so it goes again in seq order, late (the gateway paces
  late frames instead of refusing them). While the gateway still records nothing, each
  such reopen waits twice as long as the last, up to ``refused_retry_max_s``. The answer
  of a ``not_recorded`` frame still goes to the caller at once: the robot steers by it.
- Unlabelled frames that cannot be delivered live are dropped (there is nothing to learn
  from them and their prediction would be too late to steer by).
- Reconnects use exponential backoff with jitter; UNAUTHENTICATED, PERMISSION_DENIED,
  INVALID_ARGUMENT and UNIMPLEMENTED end the session (retrying cannot help).
- Deadlines: the stream itself (``stream_deadline_s``, reopened when it expires), the
  Welcome (``connect_timeout_s``, longer than the gateway's own 5 s wait for deployments)
  and every frame's answer (``ack_timeout_s``; a stream that stops answering is abandoned
  and reopened).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.edge_client.stream.backoff import Backoff
from edgeloop.edge_client.stream.buffer import OfflineBuffer
from edgeloop.edge_client.stream.clock import RobotClock
from edgeloop.edge_client.stream.stats import StreamStats
from edgeloop.platform import log_context
from edgeloop.platform.channels import cancelled_from_outside, channel_options, open_channel
from edgeloop.platform.tls import ClientTLS, explain_unavailable
from grpc import aio

log = logging.getLogger(__name__)

CLIENT_VERSION = "edgeloop-edge/0.1.0"
FATAL_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                         grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED})


class StreamClosed(Exception):
    """The session ended for good (bad credentials, unsupported gateway, or closed)."""


class _StreamBroken(Exception):
    """The current stream cannot go on; reconnect."""


@dataclass(frozen=True)
class StreamConfig:
    """Timeouts, backoff and buffer limits of the stream client."""

    connect_timeout_s: float = 10.0
    ack_timeout_s: float = 10.0
    stream_deadline_s: float = 3600.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    capabilities: tuple[str, ...] = ("tof", "late_upload", "recorded_acks")
    refused_retry_s: float = 1.0
    """Wait before reopening the stream to resend labelled frames the gateway did not record."""
    refused_retry_max_s: float = 30.0
    """The wait doubles with each reopen after which the gateway still records nothing (its
    spool stays full), up to this: a fleet waiting out a full spool must not reopen every
    robot's stream every second."""


RESEND_REASONS = frozenset({edge_pb2.FRAME_ERROR_REASON_SPOOL_FULL,
                            edge_pb2.FRAME_ERROR_REASON_RATE_LIMITED})
"""Refusals that mean "not recorded, send it again later" for a labelled frame."""


SIMULATED_CLOCK = "simulated_clock"
"""Hello capability of a client whose capture times follow a clock of its own on purpose (a
simulator replaying history): the gateway does not judge the robot's clock by them."""


def with_simulated_clock(config: StreamConfig | None) -> StreamConfig:
    """``config`` with the ``simulated_clock`` capability added."""
    config = config or StreamConfig()
    if SIMULATED_CLOCK in config.capabilities:
        return config
    return dataclasses.replace(config, capabilities=(*config.capabilities, SIMULATED_CLOCK))


@dataclass(frozen=True)
class FrameResult:
    """How a frame ended: answered (prediction or error) or dropped undelivered."""

    seq: int
    sensor_mm: float | None
    prediction: edge_pb2.Prediction | None = None
    error: edge_pb2.FrameError | None = None
    rtt_ms: float | None = None
    late: bool = False
    dropped: bool = False

    @property
    def distance_mm(self) -> float | None:
        """The predicted distance, if the frame was answered with one."""
        if self.prediction is not None and self.prediction.HasField("distance_mm"):
            return self.prediction.distance_mm
        return None


@dataclass
class _InFlight:
    frame: edge_pb2.Frame
    sent_at: float
    buffered: bool


@dataclass
class _Queued:
    frame: edge_pb2.Frame | None = None
    buffered_seq: int | None = None


@dataclass
class _State:
    outbox: deque[_Queued] = field(default_factory=deque)
    inflight: dict[int, _InFlight] = field(default_factory=dict)
    unrecorded: dict[int, _InFlight] = field(default_factory=dict)
    """Labelled frames answered but not yet named by a Recorded message."""
    ready: bool = False
    cycle_at: float | None = None
    """When to reopen the stream to resend frames the gateway could not record."""
    cycling: bool = False
    refused_cycles: int = 0
    """Reopens for unrecorded frames since the gateway last recorded a labelled frame."""


def refused_retry_delay(config: StreamConfig, refused_cycles: int) -> float:
    """Seconds before reopening to resend unrecorded frames, after ``refused_cycles`` reopens
    that found the gateway still not recording: ``refused_retry_s``, doubling, capped."""
    return min(config.refused_retry_max_s, config.refused_retry_s * 2.0 ** min(refused_cycles, 30))


def make_traceparent() -> str:
    """A fresh W3C traceparent (sampled) for one frame."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class StreamClient:
    """Sends frames of one session to the gateway and collects the answers by seq."""

    def __init__(self, address: str, device_id: str, token: str, buffer: OfflineBuffer, *,
                 session_id: str | None = None, config: StreamConfig | None = None,
                 backoff: Backoff | None = None, tls: ClientTLS | None = None,
                 on_model_update: Callable[[edge_pb2.ModelUpdate], None] | None = None,
                 clock: RobotClock | None = None) -> None:
        self.address = address
        self.tls = tls
        self.device_id = device_id
        self.session_id = session_id or str(uuid.uuid4())
        self.buffer = buffer
        self.config = config or StreamConfig()
        self.clock = clock or RobotClock()
        """The robot's clock against the gateway's; frames are stamped by :meth:`RobotClock.now`."""
        self.stats = StreamStats()
        self.welcome: edge_pb2.Welcome | None = None
        self.results: dict[int, FrameResult] = {}
        self._metadata = (("authorization", f"Bearer {token}"), ("x-device-id", device_id))
        self.on_model_update = on_model_update
        """Called with every ModelUpdate (Welcome and stream) for on-device inference."""
        self._backoff = backoff or Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
        self._state = _State()
        self._sensor: dict[int, float | None] = {}
        self._waiters: dict[int, asyncio.Future[FrameResult]] = {}
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._closing = False
        self._fatal: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_seq = buffer.max_seq(self.session_id) + 1

    # -- public surface -------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background (returns at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"stream-{self.session_id}")

    async def wait_connected(self, timeout: float) -> bool:
        """True once a stream is open and welcomed; False after ``timeout`` seconds, or as soon
        as the session ended for good (e.g. a TLS mismatch: ``send`` then says why)."""
        connected = asyncio.ensure_future(self._connected.wait())
        waiting: set[asyncio.Future] = {connected}
        if self._task is not None:
            waiting.add(self._task)
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
        return self._connected.is_set()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The device's call metadata (token and id), e.g. for model downloads."""
        return self._metadata

    @property
    def connected(self) -> bool:
        """Whether a welcomed stream is open now."""
        return self._state.ready

    def send(self, jpeg: bytes, sensor_mm: float | None, captured_at: datetime | None = None,
             traceparent: str | None = None,
             device_prediction: edge_pb2.DevicePrediction | None = None) -> int:
        """Queue one frame; returns its seq. Never blocks: offline frames go to the buffer.

        ``device_prediction`` is the robot's own answer (on-device inference); the
        gateway records it instead of predicting again.
        """
        if self._fatal is not None:
            raise StreamClosed(str(self._fatal)) from self._fatal
        seq = self._next_seq
        self._next_seq += 1
        frame = edge_pb2.Frame(seq=seq, jpeg=jpeg, traceparent=traceparent or make_traceparent())
        frame.captured_at.FromDatetime(captured_at or self.clock.now())
        if sensor_mm is not None:
            frame.sensor_mm = sensor_mm
        if device_prediction is not None:
            frame.device_prediction.CopyFrom(device_prediction)
        self._sensor[seq] = sensor_mm
        self.stats.record_submit()
        if self._state.ready:
            self._state.outbox.append(_Queued(frame=frame))
            self._wake.set()
        else:
            self._park(frame)
        return seq

    async def result(self, seq: int, timeout: float) -> FrameResult | None:
        """The frame's result, waiting up to ``timeout`` seconds (None if not there yet)."""
        if seq in self.results:
            return self.results[seq]
        waiter = self._waiters.setdefault(seq, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return None

    async def results_for(self, seqs: Sequence[int], timeout: float) -> dict[int, FrameResult]:
        """Results of ``seqs`` that arrive within ``timeout`` seconds in total."""
        deadline = time.monotonic() + timeout
        found: dict[int, FrameResult] = {}
        for seq in seqs:
            res = await self.result(seq, max(0.0, deadline - time.monotonic()))
            if res is not None:
                found[seq] = res
        return found

    def pending_labelled(self) -> int:
        """Labelled frames not answered yet (in flight, queued or in the buffer)."""
        buffered = self.buffer.count(self.session_id)
        live = sum(1 for q in self._state.outbox if q.frame is not None
                   and q.frame.HasField("sensor_mm"))
        live += sum(1 for f in (*self._state.inflight.values(), *self._state.unrecorded.values())
                    if not f.buffered and f.frame.HasField("sensor_mm"))
        return buffered + live

    async def close(self, drain_timeout_s: float = 10.0) -> None:
        """Deliver what is pending (up to ``drain_timeout_s``), then close the stream.

        Labelled frames that could not be delivered stay in the on-disk buffer; a later
        client with the same ``session_id`` and buffer delivers them.
        """
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), drain_timeout_s)
        except TimeoutError:
            log.warning("closing with undelivered labelled frames left in the buffer",
                        extra={"session": self.session_id, "pending": self.pending_labelled()})
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._flush_to_buffer()
        if self._fatal is not None:
            raise StreamClosed(str(self._fatal)) from self._fatal

    # -- connection loop ------------------------------------------------------------

    async def _run(self) -> None:
        with log_context(device=self.device_id, session=self.session_id):
            while True:
                try:
                    await self._stream_once()
                    if self._done():
                        return
                except aio.AioRpcError as exc:
                    if exc.code() in FATAL_CODES:
                        self._fail(exc)
                        return
                    if await self._tls_mismatch(exc):
                        return
                    log.warning("stream lost, reconnecting",
                                extra={"code": exc.code().name, "details": exc.details()})
                except (_StreamBroken, TimeoutError, aio.UsageError,
                        asyncio.InvalidStateError) as exc:
                    log.warning("stream lost, reconnecting", extra={"reason": repr(exc)})
                finally:
                    self._disconnect()
                if self._done():
                    return
                await asyncio.sleep(self._backoff.next_delay())
                self.stats.reconnects += 1

    def _done(self) -> bool:
        return self._closing and self.pending_labelled() == 0

    async def _tls_mismatch(self, exc: aio.AioRpcError) -> bool:
        """End the session when UNAVAILABLE is a TLS mismatch: no retry can fix that."""
        if exc.code() != grpc.StatusCode.UNAVAILABLE or self.welcome is not None:
            return False
        reason = await asyncio.to_thread(explain_unavailable, self.address, self.tls)
        if not reason:
            return False
        self._fatal = StreamClosed(reason)
        log.error("cannot connect to the gateway: %s", reason)
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(StreamClosed(reason))
        return True

    async def _stream_once(self) -> None:
        async with open_channel(self.address, tls=self.tls, options=_options()) as channel:
            call = gw_grpc.EdgeGatewayServiceStub(channel).Stream(
                metadata=self._metadata, timeout=self.config.stream_deadline_s)
            try:
                await self._handshake(call)
                await self._pump(call)
            finally:
                call.cancel()

    async def _handshake(self, call: aio.StreamStreamCall) -> None:
        hello = edge_pb2.Hello(device_id=self.device_id, client_version=CLIENT_VERSION,
                               capabilities=list(self.config.capabilities),
                               session_id=self.session_id)
        sent = self.clock.read()
        await call.write(gw_pb2.StreamRequest(hello=hello))
        response = await asyncio.wait_for(call.read(), self.config.connect_timeout_s)
        arrived = self.clock.read()
        if response is aio.EOF:
            await _raise_status(call)
            raise _StreamBroken("stream ended before Welcome")
        if response.WhichOneof("kind") != "welcome":
            raise _StreamBroken(f"expected Welcome, got {response.WhichOneof('kind')}")
        self.welcome = response.welcome
        if self.welcome.HasField("gateway_time"):  # not from a gateway before the field
            self.clock.welcomed(sent, self.welcome.gateway_time.ToDatetime(UTC), arrived)
        if self.welcome.HasField("model"):
            self._model_update(self.welcome.model)
        self._backoff.reset()
        # Backlog first, in seq order, then live frames: seq increases on the stream.
        backlog = [_Queued(buffered_seq=s) for s in self.buffer.seqs(self.session_id)]
        self._state.outbox.extendleft(reversed(backlog))
        self._state.ready = True
        self._connected.set()
        log.info("stream open", extra={"deployment": self.welcome.deployment,
                                       "gateway": self.welcome.gateway_id, "backlog": len(backlog)})

    async def _pump(self, call: aio.StreamStreamCall) -> None:
        tasks = [asyncio.create_task(self._write_loop(call)),
                 asyncio.create_task(self._read_loop(call)),
                 asyncio.create_task(self._watchdog())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            if not tasks[1].done():
                # Half-closed: the gateway answers what is left, then ends the stream.
                await asyncio.wait_for(tasks[1], self.config.ack_timeout_s)
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise  # close() gave up waiting, or the program is stopping
            # grpc.aio cancels a call itself when a write breaks under it and raises
            # CancelledError, not an RPC error: that would end the session silently (the
            # gateway's forwarder had that fault); it is a lost stream like any other.
            raise _StreamBroken("the call was cancelled under the stream") from None
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _write_loop(self, call: aio.StreamStreamCall) -> None:
        state = self._state
        while True:
            if self._should_half_close():
                await call.done_writing()
                return
            if state.cycling or not state.outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            frame, buffered = self._next_frame(state.outbox.popleft())
            if frame is None:
                continue
            state.inflight[frame.seq] = _InFlight(frame, time.monotonic(), buffered)
            await call.write(gw_pb2.StreamRequest(frame=frame))
            self.stats.written += 1

    def _should_half_close(self) -> bool:
        state = self._state
        if state.inflight or state.unrecorded:
            return False
        # Cycling: the stream is reopened so refused frames go again, in seq order.
        return state.cycling or (self._closing and not state.outbox
                                 and self.pending_labelled() == 0)

    def _next_frame(self, item: _Queued) -> tuple[edge_pb2.Frame | None, bool]:
        if item.frame is not None:
            return item.frame, False
        assert item.buffered_seq is not None
        frame = self.buffer.get(self.session_id, item.buffered_seq)
        if frame is not None:
            self.stats.resent += 1
        return frame, True

    async def _read_loop(self, call: aio.StreamStreamCall) -> None:
        while True:
            response = await call.read()
            if response is aio.EOF:
                await _raise_status(call)
                if self._closing or self._state.cycling:
                    return
                raise _StreamBroken("gateway ended the stream")
            kind = response.WhichOneof("kind")
            if kind == "prediction":
                self._answered(response.prediction.seq, prediction=response.prediction)
            elif kind == "error":
                self._answered(response.error.seq, error=response.error)
            elif kind == "model_update":
                self._model_update(response.model_update)
            elif kind == "recorded":
                self._recorded(response.recorded.seqs)
            if self._closing or self._state.cycling:
                self._wake.set()

    async def _watchdog(self) -> None:
        timeout = self.config.ack_timeout_s
        state = self._state
        while True:
            await asyncio.sleep(min(0.25, timeout / 4))
            if state.cycle_at is not None and time.monotonic() >= state.cycle_at:
                state.cycle_at, state.cycling = None, True
                state.refused_cycles += 1
                self._wake.set()
            waiting = (*state.inflight.values(), *state.unrecorded.values())
            if waiting and time.monotonic() - min(f.sent_at for f in waiting) > timeout:
                raise _StreamBroken(f"no answer or Recorded within ack_timeout_s={timeout}")

    # -- bookkeeping ----------------------------------------------------------------

    def _answered(self, seq: int, prediction: edge_pb2.Prediction | None = None,
                  error: edge_pb2.FrameError | None = None) -> None:
        sent = self._state.inflight.pop(seq, None)
        if sent is None:
            log.debug("answer for a frame not in flight", extra={"seq": seq})
            return
        labelled, late = sent.frame.HasField("sensor_mm"), sent.frame.late  # parking marks it late
        if error is not None and error.reason in RESEND_REASONS and labelled:
            self._retry_later(sent)
            return
        if prediction is not None and prediction.not_recorded and labelled:
            self.stats.unrecorded += 1
            self._retry_later(sent, refused=False)  # answered all the same: resolved below
        elif self._awaits_record(sent, error):
            self._state.unrecorded[seq] = sent
        else:
            if sent.buffered:
                self.buffer.delete(self.session_id, seq)
            if labelled and prediction is not None:  # recorded, as far as this gateway says
                self._state.refused_cycles = 0
        rtt = None if late else (time.monotonic() - sent.sent_at) * 1000.0
        if rtt is not None:
            self.stats.rtts_ms.append(rtt)
        self.stats.late += int(late)
        if prediction is not None:
            self.stats.predictions += 1
        else:
            self.stats.errors += 1
            log.warning("frame refused", extra={"seq": seq,
                                                "reason": error.reason if error else None,
                                                "detail": error.message if error else None})
        self._resolve(FrameResult(seq, self._sensor.get(seq), prediction, error, rtt, late))

    def _awaits_record(self, sent: _InFlight, error: edge_pb2.FrameError | None) -> bool:
        """Whether an answered frame stays kept until a Recorded names it."""
        return (self.welcome is not None and self.welcome.sends_recorded
                and sent.frame.HasField("sensor_mm") and (error is None or error.recorded))

    def _recorded(self, seqs: Sequence[int]) -> None:
        # Durable at the gateway: forget the frames (also their copies on disk).
        if seqs:
            self._state.refused_cycles = 0  # the gateway records again
        for seq in seqs:
            sent = self._state.unrecorded.pop(seq, None)
            if sent is not None and sent.buffered:
                self.buffer.delete(self.session_id, seq)

    def _model_update(self, update: edge_pb2.ModelUpdate) -> None:
        log.info("gateway announced the device model", extra={
            "model": update.model_name, "version": update.model_version})
        if self.on_model_update is not None:
            self.on_model_update(update)

    def _retry_later(self, sent: _InFlight, refused: bool = True) -> None:
        # The gateway could not record the frame: it is not done. Keep it on disk and
        # reopen the stream shortly, so it goes again with its seq and in order.
        if not sent.buffered:
            self._park(sent.frame)
        self.stats.refused += int(refused)
        state = self._state
        delay = refused_retry_delay(self.config, state.refused_cycles)
        state.cycle_at = state.cycle_at or time.monotonic() + delay
        log.warning("gateway did not record a labelled frame; resending it late",
                    extra={"seq": sent.frame.seq, "retry_in_s": delay})

    def _resolve(self, result: FrameResult) -> None:
        self.results[result.seq] = result
        waiter = self._waiters.pop(result.seq, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def _park(self, frame: edge_pb2.Frame) -> None:
        # A frame that cannot go out live: labelled ones wait on disk, the rest are dropped.
        if frame.HasField("sensor_mm"):
            frame.late = True
            self.stats.evicted += self.buffer.put(self.session_id, frame)
        else:
            self.stats.dropped += 1
            self._resolve(FrameResult(frame.seq, None, dropped=True))

    def _disconnect(self) -> None:
        self._state.ready = False
        self._state.cycling, self._state.cycle_at = False, None
        self._connected.clear()
        self._flush_to_buffer()

    def _flush_to_buffer(self) -> None:
        state = self._state
        pending = [f.frame for f in (*state.inflight.values(), *state.unrecorded.values())
                   if not f.buffered]
        pending += [q.frame for q in state.outbox if q.frame is not None]
        state.inflight.clear()
        state.unrecorded.clear()
        state.outbox.clear()
        for frame in sorted(pending, key=lambda f: f.seq):
            self._park(frame)

    def _fail(self, exc: aio.AioRpcError) -> None:
        self._fatal = exc
        log.error("session ended by the gateway",
                  extra={"code": exc.code().name, "details": exc.details()})
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(StreamClosed(f"{exc.code().name}: {exc.details()}"))


async def _raise_status(call: aio.StreamStreamCall) -> None:
    """Raise the call's final status as AioRpcError if it is not OK."""
    code = await call.code()
    if code != grpc.StatusCode.OK:
        raise aio.AioRpcError(code, await call.initial_metadata(), await call.trailing_metadata(),
                              details=await call.details())


def _options() -> list[tuple[str, object]]:
    # No transparent retries on the stream: the client resends itself, by seq.
    return [*channel_options(retries=False),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000)]
