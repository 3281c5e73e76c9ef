"""Robots that predict on the device: which version they run, and their frames' predictions.

- :func:`device_route` picks the model version a device runs itself: the arm its
  deployment's strategy gives the device (canary and A/B split per device as for
  served frames; a bandit, which chooses per frame, gives the device its first arm).
- :func:`model_updates` yields a ``ModelUpdate`` after the Welcome and whenever that
  version changes (the gateway follows WatchDeployments), so the robot never polls. A robot
  that declared ``quantized_model`` is offered the version's quantized twin once the gateway
  runs that twin itself (its host checked it against the SavedModel on the camera frames it
  served): the float file until then, and a second update for the same version after.
- :class:`DevicePredictions` turns a frame that carries the device's own prediction
  into an outcome without predicting again; if the deployment asks
  (``Deployment.device_shadow``), the server predicts it too, recorded as the
  observation's ``server_shadow`` for device/server agreement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
from edgeloop.contracts.edge.v1 import edge_gateway_service_pb2 as gw_pb2
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.gateway.deployments import DeploymentState
from edgeloop.gateway.hosts.base import ModelKey
from edgeloop.gateway.models_download import ModelFiles
from edgeloop.gateway.observations import FrameOutcome
from edgeloop.gateway.routing import NO_ARM, DeploymentView, Route, Router, Strategy
from edgeloop.gateway.validation import FrameRejected, Reason
from edgeloop.platform.errors import InvalidArgument

log = logging.getLogger(__name__)

SERVER_SHADOW = "server:shadow"
"""Marks the server's shadow of a device prediction among a route's shadows (never an arm name)."""
DEVICE = observation_pb2.PredictionSource.PREDICTION_SOURCE_DEVICE
UNPUBLISHED_RECHECK_S = 1.0
"""How often a version without its TFLite file yet is looked for again (the registry
converts in the background after registering, so the file may follow the version)."""


def device_route(view: DeploymentView | None, device_id: str, router: Router) -> Route:
    """The arm and model version ``device_id`` runs on itself under ``view``."""
    if view is None or not view.active:
        return Route(NO_ARM, None)
    if view.strategy == Strategy.STRATEGY_BANDIT:
        resolved = sorted((name, key) for name, key in view.arms.items() if key is not None)
        return Route(*resolved[0]) if resolved else Route(NO_ARM, None)
    route = router.route(view, device_id)
    return Route(route.arm, route.key)


TwinCheck = Callable[[ModelKey], bool | None]
"""Whether the gateway runs a version's quantized twin: True, False (it does not and will not),
None (not decided yet: the version is loading, or its twin being checked)."""


async def model_update(state: DeploymentState, files: ModelFiles, router: Router,
                       device_id: str, deployment: str, twin: TwinCheck | None = None
                       ) -> tuple[edge_pb2.ModelUpdate, bool]:
    """The ModelUpdate telling ``device_id`` which version to run now, and whether it may
    change without a deployment change (its file not published yet, or a quantized twin the
    device wants (``twin`` given) not decided yet)."""
    route = device_route(state.get(deployment), device_id, router)
    update = edge_pb2.ModelUpdate(deployment=deployment, arm=route.arm)
    if route.key is None:
        return update, False
    update.model_name, update.model_version = route.key.model_name, route.key.version
    verified = twin(route.key) if twin is not None else False
    described = await files.describe(route.key, quantized=True) if verified else None
    update.quantized = described is not None
    if described is None:
        described = await files.describe(route.key)
    if described is None:
        log.warning("device model has no TFLite file; the robot keeps its model",
                    extra={"model": route.key.model_name, "version": route.key.version})
        return update, True
    update.size_bytes, update.sha256 = described.size_bytes, described.sha256
    return update, verified is None


async def model_updates(state: DeploymentState, files: ModelFiles, router: Router,
                        device_id: str, deployment_of: Callable[[], str],
                        first: edge_pb2.ModelUpdate, twin: TwinCheck | None = None
                        ) -> AsyncIterator[edge_pb2.ModelUpdate]:
    """Every later ModelUpdate of a device: one per change of its version or file (after
    ``first``)."""
    last = first
    while True:
        changed = state.change_event()  # taken before reading, so no change slips through
        update, may_change = await model_update(state, files, router, device_id,
                                                deployment_of(), twin)
        if update != last:
            last = update
            yield update
        if may_change:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), UNPUBLISHED_RECHECK_S)
        else:
            await changed.wait()


def check_device_prediction(frame: edge_pb2.Frame) -> None:
    """FrameRejected naming the field unless the device prediction is usable."""
    device = frame.device_prediction
    problem = None
    if not math.isfinite(device.distance_mm):
        field, problem = "distance_mm", f"{device.distance_mm!r} is not a finite distance"
    elif not device.model_name or not device.model_version:
        field, problem = "model_version", "name the model and version that predicted"
    if problem is not None:
        raise FrameRejected(Reason.FRAME_ERROR_REASON_INVALID_DEVICE_PREDICTION,
                            InvalidArgument(f"frame.device_prediction.{field}", problem).message)


class DevicePredictions:
    """Outcomes of frames predicted on the device (and the optional server shadow)."""

    def __init__(self, router: Router,
                 call: Callable[[ModelKey, np.ndarray], Awaitable[float]]) -> None:
        self.router = router
        self.call = call

    def outcome(self, view: DeploymentView, device_id: str, rgb: np.ndarray,
                frame: edge_pb2.Frame) -> tuple[FrameOutcome, Route, list[asyncio.Task[float]]]:
        """The device's prediction as the frame's outcome; a server shadow task if asked."""
        check_device_prediction(frame)
        device = frame.device_prediction
        route = device_route(view, device_id, self.router)
        outcome = FrameOutcome(view.name, view.data_group, route.arm, device.model_name,
                               device.model_version, device.distance_mm, source=DEVICE,
                               device_quantized=device.quantized)
        if not (view.device_shadow and route.key is not None):
            return outcome, Route(route.arm, None), []
        shadow = asyncio.create_task(self.call(route.key, rgb), name="server-shadow")
        return outcome, Route(route.arm, route.key, ((SERVER_SHADOW, route.key),)), [shadow]


def as_server_shadow(observation: observation_pb2.Observation, arm: str, key: ModelKey,
                     prediction_mm: float) -> None:
    """Record the server's prediction of a device-predicted frame on ``observation``."""
    observation.server_shadow.CopyFrom(observation_pb2.ArmPrediction(
        arm=arm, model_name=key.model_name, model_version=key.version,
        prediction_mm=prediction_mm))


CAPABILITY = "device_inference"
"""Hello capability of a robot that runs models itself and wants ModelUpdates."""
QUANTIZED_CAPABILITY = "quantized_model"
"""Hello capability of such a robot that runs a version's quantized twin when offered."""


class DeviceModels:
    """What a stream needs for robots that run models themselves: updates and downloads."""

    def __init__(self, state: DeploymentState, files: ModelFiles, router: Router,
                 twin: TwinCheck | None = None) -> None:
        self.state = state
        self.files = files
        self.router = router
        self.twin = twin
        """Whether the gateway runs a version's quantized twin (None: robots get float files)."""

    def _twin_for(self, quantized: bool) -> TwinCheck | None:
        return self.twin if quantized else None

    async def current(self, device_id: str, deployment: str,
                      quantized: bool = False) -> edge_pb2.ModelUpdate:
        """The version ``device_id`` should run now (for the Welcome); ``quantized``: the
        device runs quantized twins."""
        update, _ = await model_update(self.state, self.files, self.router, device_id,
                                       deployment, self._twin_for(quantized))
        return update

    def changes(self, device_id: str, deployment_of: Callable[[], str],
                first: edge_pb2.ModelUpdate,
                quantized: bool = False) -> AsyncIterator[edge_pb2.ModelUpdate]:
        """Every change of that version (or of its file) after ``first``."""
        return model_updates(self.state, self.files, self.router, device_id, deployment_of,
                             first, self._twin_for(quantized))

    def download(self, device_id: str, deployment: str, model_name: str, version: str,
                 offset: int, quantized: bool = False
                 ) -> AsyncIterator[gw_pb2.DownloadModelResponse]:
        """The chunks of a version's TFLite file (or its quantized twin) from ``offset``, if
        the device may have it."""
        key = self.files.key_for(deployment, model_name, version)
        log.info("model download", extra={"model": model_name, "version": version,
                                          "offset": offset, "device": device_id,
                                          "quantized": quantized})
        return self.files.chunks(key, offset, quantized)
