"""One frame's way through the gateway: validate, reserve, decode, route, predict, record.

The answer goes back as soon as the answering arm has predicted; the observation is
recorded afterwards (after shadow arms finished, if any) through the spool, and the
:class:`Answer` carries the future that says when the record is durable. Spool room is
reserved before the model runs. Where there is none (the spool is full, or the disk refuses
writes), a live frame the model can answer is still answered, marked ``not_recorded``: a
robot steering by its answers must not go blind because the recording fell behind, and a
client that keeps labelled frames sends the frame again later, as after a SPOOL_FULL
refusal (nothing the refusal kept is lost by answering). A frame with nothing to answer
(late, predicted by the device itself, no model, or the model failed) is refused with
SPOOL_FULL as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import grpc
import numpy as np
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.gateway.decoding import INLINE_MAX_PIXELS, BatchDecoder, small_frames
from edgeloop.gateway.deployments import DeploymentState
from edgeloop.gateway.device_predictions import SERVER_SHADOW, DevicePredictions, as_server_shadow
from edgeloop.gateway.hosts.base import ModelKey
from edgeloop.gateway.observations import (
    Durable,
    FrameContext,
    FrameOutcome,
    Recorder,
    build_observation,
    observation_id_for,
    reservation_bytes,
)
from edgeloop.gateway.routing import NO_ARM, DeploymentView, Route, Router
from edgeloop.gateway.spool import Spool
from edgeloop.gateway.tracing import frame_tracer, start_frame_span, trace_ids
from edgeloop.gateway.validation import (
    DecodedImage,
    FrameRejected,
    Reason,
    check_envelope,
    decode_jpeg,
)
from edgeloop.platform import log_context
from opentelemetry import trace
from opentelemetry.trace import Span

log = logging.getLogger(__name__)

Shadow = asyncio.Task[float]
"""A shadow arm's prediction still running while the answer goes out."""
PREDICT_TIMEOUT_S = 10.0
"""A model that has not answered by then is reported as MODEL_UNAVAILABLE for the frame."""


class Predictor(Protocol):
    """What the stream needs from the model plane (the hosts' MicroBatcher)."""

    async def predict_one(self, key: ModelKey, image: np.ndarray) -> float:
        """Distance in mm for one RGB ``uint8[h, w, 3]`` image from model version ``key``."""


@dataclass(frozen=True)
class Answer:
    """The response to a frame and, if the frame is recorded, when its record is durable."""

    response: gw_pb2.StreamResponse
    durable: Durable | None = None


@dataclass(frozen=True)
class _Arrival:
    device_id: str
    session_id: str
    deployment: str
    received_perf: float
    received_at: datetime


class FrameProcessor:
    """Turns a frame into a Prediction or a FrameError, and records it."""

    def __init__(self, state: DeploymentState, router: Router, predictor: Predictor,
                 spool: Spool, recorder: Recorder, max_frame_bytes: int,
                 decode_threads: int = 2,
                 decode_inline_max_pixels: int = INLINE_MAX_PIXELS) -> None:
        self.state = state
        self.router = router
        self.predictor = predictor
        self.spool = spool
        self.recorder = recorder
        self.max_frame_bytes = max_frame_bytes
        self.tracer = frame_tracer()
        self.device = DevicePredictions(router, self._call)
        self.unrecorded = UnrecordedAnswers()
        # Small frames decode at once on the event loop (cheaper than a thread hop); larger
        # ones on threads (the decoder releases the GIL), so they cannot stall the streams.
        self._decoder: BatchDecoder[DecodedImage] = BatchDecoder(
            decode_jpeg, decode_threads,
            inline=small_frames(decode_inline_max_pixels) if decode_inline_max_pixels else None)

    def close(self) -> None:
        """Stop the decode threads."""
        self._decoder.close()

    async def process(self, frame: edge_pb2.Frame, device_id: str, session_id: str,
                      deployment: str, previous_seq: int | None, received_perf: float,
                      received_at: datetime) -> Answer:
        """The answer to ``frame``; a refused frame is answered by a FrameError."""
        arrival = _Arrival(device_id, session_id, deployment, received_perf, received_at)
        span = start_frame_span(self.tracer, frame.traceparent, device_id, frame.seq)
        trace_id, traceparent = trace_ids(span)
        with log_context(device=device_id, deployment=deployment, trace_id=trace_id), \
                trace.use_span(span, end_on_exit=False):
            try:
                return await self._answer(frame, arrival, previous_seq, trace_id, traceparent, span)
            except FrameRejected as exc:
                return Answer(_refusal(exc, frame.seq, span))
            finally:
                span.end()

    async def _answer(self, frame: edge_pb2.Frame, arrival: _Arrival, previous_seq: int | None,
                      trace_id: str, traceparent: str, span: Span) -> Answer:
        check_envelope(frame, self.max_frame_bytes, previous_seq)
        reserved = reservation_bytes(len(frame.jpeg))
        recording = self.spool.reserve(reserved)
        if not recording and frame.late:  # refused before it takes a bandit's draw
            raise _spool_full()
        view = self._view(arrival.deployment)
        # Routed before the first await, so in the order the robot sent its frames: a
        # stream's frames decode side by side and may finish out of order, and a version
        # switch between two of them must not send the later frame to the old version.
        route = (None if frame.HasField("device_prediction")
                 else self.router.route(view, arrival.device_id))
        if not recording and (route is None or route.key is None):  # nothing to answer
            raise _spool_full()
        try:
            image = await self._decoder.decode(frame.jpeg)
        except BaseException:
            if recording:
                self.spool.unreserve(reserved)
            raise
        ctx = FrameContext(arrival.device_id, arrival.session_id, arrival.received_at,
                           trace_id, traceparent)
        try:
            outcome, route, shadows = await self._predict(view, route, arrival.device_id,
                                                          image.rgb, frame, recording)
        except FrameRejected as exc:
            if not recording:
                raise _spool_full(f"; {exc.message}") from exc
            # The model could not answer, but the frame and its label are still data:
            # record it without a prediction, then refuse the frame.
            unanswered = FrameOutcome(view.name, view.data_group, NO_ARM)
            durable = self._record(self._observation(frame, ctx, unanswered, arrival), route=None,
                                   shadows=[], reserved=reserved)
            return Answer(_refusal(exc, frame.seq, span, recorded=True), durable)
        observation = self._observation(frame, ctx, outcome, arrival)
        durable = self._record(observation, route, shadows, reserved) if recording else None
        self.unrecorded.note(recording, frame.seq)
        _annotate(span, outcome, observation.observation_id, recording)
        prediction = _prediction(frame.seq, outcome, observation.latency_ms, trace_id,
                                 observation.observation_id)
        prediction.not_recorded = not recording
        return Answer(gw_pb2.StreamResponse(prediction=prediction), durable)

    @staticmethod
    def _observation(frame: edge_pb2.Frame, ctx: FrameContext, outcome: FrameOutcome,
                     arrival: _Arrival) -> observation_pb2.Observation:
        latency_ms = (time.perf_counter() - arrival.received_perf) * 1000
        observation_id = observation_id_for(arrival.device_id, arrival.session_id, frame)
        return build_observation(observation_id, frame, ctx, outcome, latency_ms)

    def _view(self, name: str) -> DeploymentView:
        view = self.state.get(name)
        if view is None or not view.active:
            # Unassigned device or inactive deployment: record the frame, predict nothing.
            # Features needs a data group to file it under: the deployment's, else its name.
            return DeploymentView(name=name, data_group=view.data_group if view else name)
        return view

    async def _predict(self, view: DeploymentView, route: Route | None, device_id: str,
                       rgb: np.ndarray, frame: edge_pb2.Frame, recording: bool = True
                       ) -> tuple[FrameOutcome, Route, list[Shadow]]:
        if route is None:
            # The robot predicted itself: record its answer, do not predict again.
            return self.device.outcome(view, device_id, rgb, frame)
        outcome = FrameOutcome(view.name, view.data_group, route.arm)
        if route.key is None:
            return outcome, route, []
        # shadow arms' answers only go into the record: none without one
        shadows = [asyncio.create_task(self._call(key, rgb), name=f"shadow-{arm}")
                   for arm, key in route.shadows] if recording else []
        try:
            outcome.prediction_mm = await self._call(route.key, rgb)
        except FrameRejected:
            for shadow in shadows:
                shadow.cancel()
            raise
        outcome.model_name, outcome.model_version = route.key.model_name, route.key.version
        if frame.HasField("sensor_mm"):
            self.router.learn(view, route, outcome.prediction_mm, frame.sensor_mm)
        return outcome, route, shadows

    async def _call(self, key: ModelKey, rgb: np.ndarray) -> float:
        # A child of the frame's span; the batcher adds its wait and batch size to it.
        attributes = {"edgeloop.model_name": key.model_name, "edgeloop.model_version": key.version}
        try:
            with self.tracer.start_as_current_span("model_host.predict", kind=trace.SpanKind.CLIENT,
                                                   attributes=attributes):
                # asyncio.timeout, not wait_for: wait_for wraps the call in a task of its own
                async with asyncio.timeout(PREDICT_TIMEOUT_S):
                    return await self.predictor.predict_one(key, rgb)
        except Exception as exc:
            raise FrameRejected(Reason.FRAME_ERROR_REASON_MODEL_UNAVAILABLE,
                                f"model {key.model_name} v{key.version}: cannot answer now "
                                f"({type(exc).__name__}: {exc})",
                                grpc.StatusCode.UNAVAILABLE) from exc

    def _record(self, observation: observation_pb2.Observation, route: Route | None,
                shadows: list[Shadow], reserved: int) -> Durable:
        if route is None or not shadows:
            return self.recorder.submit(observation, reserved)
        return self.recorder.submit_when_ready(_with_shadows(observation, shadows, route),
                                               reserved)


class UnrecordedAnswers:
    """Live frames answered without a record while the spool had no room: counted, and
    logged when such a stretch starts and when it has ended, not once a frame.

    A full spool does not stay full: each batch features confirms frees room for a few
    frames, which are recorded, and then it is full again. A stretch therefore ends only
    once no frame has gone unrecorded for :data:`QUIET_S` (an overload soak logged 1,689
    starts in 4 minutes when every recorded frame ended one)."""

    QUIET_S = 10.0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.total = 0
        """Frames answered without a record since the gateway started."""
        self._started: float | None = None
        self._last: float = 0.0
        self._in_stretch = 0

    @property
    def since(self) -> float | None:
        """Wall-clock time the current stretch of unrecorded answers began (None: none for
        :data:`QUIET_S`)."""
        return None if self._over(self._clock()) else self._started

    def note(self, recording: bool, seq: int) -> None:
        """One frame answered, recorded or not."""
        if recording and self._started is None:  # the usual case: no clock read
            return
        now = self._clock()
        if recording:
            if self._over(now):
                log.info("recording every frame again", extra={
                    "answered_not_recorded": self._in_stretch,
                    "for_s": round(self._last - self._started, 1)})
                self._started, self._in_stretch = None, 0
            return
        if self._over(now):  # none open, or the last one ended without a recorded frame
            log.warning("spool full: answering live frames without recording them "
                        "(marked not_recorded; robots keep labelled ones to send again)",
                        extra={"seq": seq})
            self._started, self._in_stretch = now, 0
        self._last = now
        self._in_stretch += 1
        self.total += 1

    def _over(self, now: float) -> bool:
        """No stretch is open, or its last unrecorded answer is QUIET_S old."""
        return self._started is None or now - self._last >= self.QUIET_S


def _spool_full(detail: str = "") -> FrameRejected:
    return FrameRejected(Reason.FRAME_ERROR_REASON_SPOOL_FULL,
                         "spool: full; the gateway cannot record frame.jpeg durably now" + detail,
                         grpc.StatusCode.RESOURCE_EXHAUSTED)


def _refusal(exc: FrameRejected, seq: int, span: Span,
             recorded: bool = False) -> gw_pb2.StreamResponse:
    """The FrameError answering frame ``seq``, noted on its span and in the log."""
    span.set_attribute("edgeloop.frame_error", Reason.Name(exc.reason))
    log.info("frame refused", extra={"seq": seq, "detail": exc.message,
                                     "reason": Reason.Name(exc.reason), "recorded": recorded})
    error = exc.to_proto(seq)
    error.recorded = recorded
    return gw_pb2.StreamResponse(error=error)


async def _with_shadows(observation: observation_pb2.Observation,
                        shadows: list[Shadow], route: Route) -> observation_pb2.Observation:
    """The observation completed with the shadow arms' answers (a failed one is left out)."""
    results = await asyncio.gather(*shadows, return_exceptions=True)
    for (arm, key), result in zip(route.shadows, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("shadow arm failed", extra={"arm": arm, "error": str(result)})
            continue
        if arm == SERVER_SHADOW:
            as_server_shadow(observation, route.arm, key, result)
            continue
        observation.shadow_predictions.append(observation_pb2.ArmPrediction(
            arm=arm, model_name=key.model_name, model_version=key.version, prediction_mm=result))
    return observation


def _prediction(seq: int, outcome: FrameOutcome, latency_ms: float, trace_id: str,
                observation_id: str) -> edge_pb2.Prediction:
    prediction = edge_pb2.Prediction(
        seq=seq, model_name=outcome.model_name, model_version=outcome.model_version,
        deployment=outcome.deployment, arm=outcome.arm or NO_ARM,
        server_latency_ms=latency_ms, trace_id=trace_id, observation_id=observation_id)
    if outcome.prediction_mm is not None:
        prediction.distance_mm = outcome.prediction_mm
    return prediction


def _annotate(span: Span, outcome: FrameOutcome, observation_id: str,
              recorded: bool = True) -> None:
    span.set_attributes({"edgeloop.deployment": outcome.deployment, "edgeloop.arm": outcome.arm,
                         "edgeloop.model_name": outcome.model_name,
                         "edgeloop.model_version": outcome.model_version,
                         "edgeloop.observation_id": observation_id,
                         "edgeloop.recorded": recorded})
