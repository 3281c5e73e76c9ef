"""``EdgeGatewayService.Stream``: one robot's drive session, frames up, answers down.

Order of a stream: metadata (``authorization: Bearer <token>``, ``x-device-id``) is
checked with the registry; the first message must be a Hello for the same device and
is answered by a Welcome; then every frame is answered by a Prediction or a FrameError
and the stream goes on. Authentication failures (also a device revoked mid-stream)
end the stream with UNAUTHENTICATED; frames before Hello end it with FAILED_PRECONDITION.

Frames of one stream are checked in order (sequence numbers) and then processed
concurrently (decode, predict), so a robot sending at full speed keeps the
micro-batcher fed; answers carry ``seq`` and may overtake each other.

A client that says ``recorded_acks`` in its Hello also gets ``Recorded`` messages naming
its labelled frames once their observations are fsynced to the spool (one message per
group commit): the answer goes out first, so steering never waits for the disk, and the
robot keeps each labelled frame until it is named, so a gateway killed between answering
and recording loses nothing (the robot sends the frame again on its next stream).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2_grpc as gw_grpc
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.gateway.auth import DeviceAuthenticator, Grant, parse_bearer
from edgeloop.gateway.contacts import Contact
from edgeloop.gateway.deployments import UNASSIGNED, DeploymentState
from edgeloop.gateway.device_predictions import CAPABILITY, QUANTIZED_CAPABILITY, DeviceModels
from edgeloop.gateway.frames import FrameProcessor
from edgeloop.gateway.limits import DeviceLimits
from edgeloop.platform import log_context
from edgeloop.platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from grpc import aio

log = logging.getLogger(__name__)

SYNC_WAIT_S = 5.0
"""How long a Hello waits for the first deployment snapshot from the registry."""
RECORDED_ACKS = "recorded_acks"
"""The Hello capability of a client that keeps labelled frames until a Recorded names them."""
SIMULATED_CLOCK = "simulated_clock"
"""The Hello capability of a client whose capture times follow a clock of its own on purpose
(a simulator replaying history): its clock is not judged (:mod:`edgeloop.gateway.contacts`)."""
MAX_IN_FLIGHT = 32
"""Frames of one stream processed at once; more waits (backpressure to the robot)."""
_END = object()


@dataclass
class Session:
    """One stream's device, credentials and position."""

    device_id: str
    token: str
    grant: Grant
    session_id: str = ""
    last_seq: int | None = None
    model: edge_pb2.ModelUpdate | None = None
    """The device model last announced, for robots that run models themselves."""
    quantized: bool = False
    """Such a robot runs quantized twins (Hello capability ``quantized_model``)."""
    acks: RecordedAcks | None = None
    """Set when the client asked for Recorded messages."""
    renewal: asyncio.Task[None] | None = None
    """The background renewal of ``grant`` in flight, if any."""
    refused: Unauthenticated | None = None
    """The registry refused the token when asked in the background: the stream ends."""
    contact: Contact | None = None
    """The device's contact, told of every frame."""
    clock_judged: bool = True
    """Its frames' capture times tell the device's clock (no ``simulated_clock`` in Hello)."""


class RecordedAcks:
    """Collects the seqs of one stream's labelled frames as they become durable and sends
    them as one Recorded message per event-loop turn (a group commit settles together)."""

    def __init__(self, out: asyncio.Queue[Any]) -> None:
        self._out = out
        self._seqs: list[int] = []

    def add(self, seq: int) -> None:
        """Name ``seq`` in the next Recorded message."""
        if not self._seqs:
            asyncio.get_running_loop().call_soon(self.flush)
        self._seqs.append(seq)

    def flush(self) -> None:
        """Send what has been collected (nothing if empty)."""
        if self._seqs:
            recorded = edge_pb2.Recorded(seqs=sorted(self._seqs))
            self._seqs.clear()
            self._out.put_nowait(gw_pb2.StreamResponse(recorded=recorded))


class EdgeGatewayService(gw_grpc.EdgeGatewayServiceServicer):
    """The robot-facing stream."""

    def __init__(self, auth: DeviceAuthenticator, state: DeploymentState,
                 frames: FrameProcessor, gateway_id: str, max_frame_bytes: int,
                 models: DeviceModels | None = None, limits: DeviceLimits | None = None
                 ) -> None:
        self.auth = auth
        self.limits = limits or DeviceLimits(max_streams=0, max_fps=0.0)
        self.models = models
        self.state = state
        self.frames = frames
        self.gateway_id = gateway_id
        self.max_frame_bytes = max_frame_bytes
        self._frame_tasks: set[asyncio.Task[None]] = set()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for frames still being processed (their observations get recorded)."""
        if self._frame_tasks:
            await asyncio.wait(list(self._frame_tasks), timeout=timeout_s)

    async def Stream(self, request_iterator: AsyncIterator[gw_pb2.StreamRequest],
                     context: aio.ServicerContext) -> AsyncIterator[gw_pb2.StreamResponse]:
        """Authenticate, greet, then answer every frame (see the module docstring)."""
        session = await self._authenticate(context)
        with log_context(device=session.device_id), \
                self.limits.stream(session.device_id) as session.contact:
            hello = await self._read_hello(request_iterator, session)
            session.session_id = hello.session_id
            wants_acks = RECORDED_ACKS in hello.capabilities
            session.clock_judged = SIMULATED_CLOCK not in hello.capabilities
            if self.models is not None and CAPABILITY in hello.capabilities:
                session.quantized = QUANTIZED_CAPABILITY in hello.capabilities
                session.model = await self.models.current(session.device_id, self._deployment(
                    session), session.quantized)
            yield gw_pb2.StreamResponse(welcome=await self._welcome(session, wants_acks))
            log.info("stream opened", extra={"session_id": hello.session_id,
                                             "client_version": hello.client_version})
            async for response in self._answer_frames(request_iterator, session, wants_acks):
                yield response

    async def _authenticate(self, context: aio.ServicerContext) -> Session:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        device_id = metadata.get("x-device-id", "").strip()
        if not device_id:
            raise Unauthenticated("metadata x-device-id: missing; name the streaming device")
        token = parse_bearer(metadata)
        grant = await self.auth.authenticate(device_id, token)
        return Session(device_id=device_id, token=token, grant=grant)

    async def _read_hello(self, requests: AsyncIterator[gw_pb2.StreamRequest],
                          session: Session) -> edge_pb2.Hello:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("kind") != "hello":
            raise FailedPrecondition("the first message of a stream must be a Hello; "
                                     "frames before it are refused")
        if first.hello.device_id != session.device_id:
            raise InvalidArgument("hello.device_id", f"{first.hello.device_id!r} does not match "
                                  f"metadata x-device-id {session.device_id!r}")
        return first.hello

    async def _welcome(self, session: Session, wants_acks: bool) -> edge_pb2.Welcome:
        try:
            await asyncio.wait_for(self.state.synced.wait(), SYNC_WAIT_S)
        except TimeoutError as exc:
            raise Unavailable("no deployment state from the registry yet; retry shortly") from exc
        name = self.state.deployment_of(session.device_id, session.grant.deployment)
        if name == UNASSIGNED:
            log.warning("device has no deployment: its frames are answered without a prediction "
                        "and recorded under data group %r; assign it with `edgeloop deployments "
                        "assign DEPLOYMENT %s`", UNASSIGNED, session.device_id)
        view = self.state.get(name)
        keys = sorted(view.model_keys(), key=lambda k: k.model_name) if view else []
        welcome = edge_pb2.Welcome(
            deployment=name, model_name=keys[0].model_name if keys else "",
            max_frame_bytes=self.max_frame_bytes, gateway_id=self.gateway_id,
            model=session.model, sends_recorded=wants_acks)
        welcome.gateway_time.GetCurrentTime()  # last: the robot times the exchange around it
        return welcome

    def _deployment(self, session: Session) -> str:
        return self.state.deployment_of(session.device_id, session.grant.deployment)

    async def DownloadModel(self, request: gw_pb2.DownloadModelRequest,  # noqa: N802
                            context: aio.ServicerContext
                            ) -> AsyncIterator[gw_pb2.DownloadModelResponse]:
        """A model version's TFLite file (or its quantized twin) in chunks from
        ``request.offset`` (resumable)."""
        session = await self._authenticate(context)
        if self.models is None:
            raise FailedPrecondition("this gateway does not serve model files")
        with log_context(device=session.device_id):
            async for chunk in self.models.download(session.device_id, self._deployment(session),
                                                    request.model_name, request.model_version,
                                                    request.offset, request.quantized):
                yield chunk

    async def _answer_frames(self, requests: AsyncIterator[gw_pb2.StreamRequest],
                             session: Session, wants_acks: bool,
                             ) -> AsyncIterator[gw_pb2.StreamResponse]:
        out: asyncio.Queue[Any] = asyncio.Queue()
        session.acks = RecordedAcks(out) if wants_acks else None
        reader = asyncio.create_task(self._read_frames(requests, session, out))
        pusher = (asyncio.create_task(self._push_models(session, out))
                  if session.model is not None else None)
        try:
            while (item := await out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.cancel()
            if pusher is not None:
                pusher.cancel()

    async def _push_models(self, session: Session, out: asyncio.Queue[Any]) -> None:
        """Tell a robot that runs models itself each time its version changes."""
        assert self.models is not None and session.model is not None
        async for update in self.models.changes(session.device_id,
                                                lambda: self._deployment(session), session.model,
                                                session.quantized):
            session.model = update
            log.info("device model changed", extra={"model": update.model_name,
                                                    "version": update.model_version})
            out.put_nowait(gw_pb2.StreamResponse(model_update=update))

    async def _read_frames(self, requests: AsyncIterator[gw_pb2.StreamRequest], session: Session,
                           out: asyncio.Queue[Any]) -> None:
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        running: set[asyncio.Task[None]] = set()
        contact = session.contact
        try:
            async for request in requests:
                if request.WhichOneof("kind") != "frame":
                    log.warning("ignoring a message that is not a frame after Hello")
                    continue
                received = time.perf_counter()
                if contact is not None:
                    contact.frame(time.time(), _live_capture_s(request.frame)
                                  if session.clock_judged else None)
                await self._check_credentials(session)
                if not await self._within_rate(request.frame, session, out):
                    continue
                await slots.acquire()
                previous, session.last_seq = session.last_seq, _next_seq(session, request.frame)
                task = asyncio.create_task(
                    self._one_frame(request.frame, session, previous, received, out, slots))
                for tasks in (running, self._frame_tasks):
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            await asyncio.gather(*running)
            if session.acks is not None:
                session.acks.flush()
            out.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # ends the stream with the exception's status code
            out.put_nowait(exc)
        finally:
            if session.renewal is not None:
                session.renewal.cancel()

    async def _within_rate(self, frame: edge_pb2.Frame, session: Session,
                           out: asyncio.Queue[Any]) -> bool:
        """Late frames wait for their turn; a live frame over the device's rate is refused."""
        if frame.late:
            await self.limits.take(session.device_id)
            return True
        if self.limits.try_take(session.device_id):
            return True
        out.put_nowait(gw_pb2.StreamResponse(error=edge_pb2.FrameError(
            seq=frame.seq, reason=edge_pb2.FRAME_ERROR_REASON_RATE_LIMITED,
            code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
            message=f"frame: device {session.device_id!r} sends faster than its limit of "
                    f"{self.limits.max_fps:g} frames/s (EDGELOOP_MAX_FPS_PER_DEVICE); "
                    "this frame was not recorded")))
        return False

    async def _check_credentials(self, session: Session) -> None:
        """Re-ask the registry when the cached grant expired or the device was revoked;
        renew a grant that still holds in the background, so no frame waits for it."""
        if session.refused is not None:
            raise session.refused
        if self.auth.is_current(session.grant):
            if session.renewal is None and self.auth.due_for_renewal(session.grant):
                session.renewal = asyncio.create_task(self._renew_credentials(session))
            return
        revoked = session.grant.generation != self.auth.generation(session.device_id)
        try:
            session.grant = await self.auth.authenticate(session.device_id, session.token)
        except Unavailable:
            if revoked:
                raise
            # Expired but not revoked, and the registry is down: keep the robot driving.
            log.warning("registry unreachable; continuing on the expired grant")

    async def _renew_credentials(self, session: Session) -> None:
        try:
            session.grant = await self.auth.renew(session.device_id, session.token)
        except Unauthenticated as exc:
            session.refused = exc
        except Unavailable:
            # Ask again only once the grant expired (the blocking path keeps the robot
            # driving while the registry is down), not on every frame until then.
            session.grant = dataclasses.replace(session.grant, renew_at=float("inf"))
            log.warning("registry unreachable; renewing the grant once it expires")
        finally:
            session.renewal = None

    async def _one_frame(self, frame: edge_pb2.Frame, session: Session, previous: int | None,
                         received: float, out: asyncio.Queue[Any],
                         slots: asyncio.Semaphore) -> None:
        try:
            answer = await self.frames.process(
                frame, session.device_id, session.session_id,
                self.state.deployment_of(session.device_id, session.grant.deployment),
                previous, received, datetime.now(UTC))
            out.put_nowait(answer.response)
        finally:
            slots.release()
        if session.acks is not None and answer.durable is not None \
                and frame.HasField("sensor_mm") and await answer.durable:
            session.acks.add(frame.seq)


def _next_seq(session: Session, frame: edge_pb2.Frame) -> int | None:
    # An out-of-order frame does not move the high-water mark; any other frame
    # does, even if it is refused later (its number is used up).
    if session.last_seq is not None and frame.seq <= session.last_seq:
        return session.last_seq
    return frame.seq


def _live_capture_s(frame: edge_pb2.Frame) -> float | None:
    """A live frame's capture time (Unix seconds, the robot's clock); None for a late frame
    (sent again from the robot's buffer) or one without it."""
    if frame.late or not frame.HasField("captured_at"):
        return None
    return frame.captured_at.seconds + frame.captured_at.nanos * 1e-9
