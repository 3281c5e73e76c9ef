"""Where a robot's predictions come from: the server, the device, or the device when it can.

``--inference server`` sends frames and waits for the gateway's answer (the thesis's
set-up). ``device`` predicts every frame on the robot with LiteRT and steers by that
answer, the gateway only records it; until the first model is downloaded the car
steers by its sensor. ``auto`` uses the device when a model is on the robot and the
server otherwise. In device and auto mode the robot announces ``device_inference`` in
its Hello, so the gateway tells it which version to run; with ``--quantized-model`` also
``quantized_model``, so the gateway offers a version's quantized twin once it has checked it.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.edge_client.inference.device_model import DeviceModel
from edgeloop.edge_client.inference.download import ModelFetcher
from edgeloop.edge_client.inference.litert import DeviceAnswer
from edgeloop.edge_client.inference.store import ModelStore
from edgeloop.edge_client.stream.client import StreamClient, StreamConfig

CAPABILITY = "device_inference"
"""The Hello capability asking the gateway for ModelUpdates."""
QUANTIZED_CAPABILITY = "quantized_model"
"""The Hello capability asking for a version's quantized twin when the gateway offers it."""


class Inference(enum.StrEnum):
    """Where a frame's prediction is computed."""

    SERVER = "server"
    DEVICE = "device"
    AUTO = "auto"


def with_capability(config: StreamConfig | None, quantized: bool = False) -> StreamConfig:
    """``config`` with the ``device_inference`` capability added (and ``quantized_model``)."""
    config = config or StreamConfig()
    wanted = (CAPABILITY, QUANTIZED_CAPABILITY) if quantized else (CAPABILITY,)
    missing = tuple(c for c in wanted if c not in config.capabilities)
    if not missing:
        return config
    return dataclasses.replace(config, capabilities=(*config.capabilities, *missing))


class Onboard:
    """The robot's inference choice and, for device/auto, its model kept current."""

    def __init__(self, inference: Inference, model: DeviceModel | None = None) -> None:
        self.inference = Inference(inference)
        self.model = model

    @classmethod
    def create(cls, inference: Inference, store_dir: Path | None,
               threads: int | None = None, quantized: bool = False) -> Onboard:
        """An Onboard with a model store at ``store_dir`` (needed unless ``server``);
        ``quantized``: it runs a version's quantized twin when the gateway offers it."""
        if Inference(inference) is Inference.SERVER:
            return cls(Inference.SERVER)
        if store_dir is None:
            raise ValueError("device and auto inference need a model store folder")
        model = DeviceModel(ModelStore(store_dir), threads, quantized=quantized)
        model.load_stored()
        return cls(inference, model)

    def attach(self, client: StreamClient) -> None:
        """Hear the gateway's ModelUpdates and download through its address and credentials."""
        if self.model is None:
            return
        client.on_model_update = self.model.want
        self.model.start(ModelFetcher(client.address, client.metadata, client.tls))

    async def stop(self) -> None:
        """Stop the background updater."""
        if self.model is not None:
            await self.model.stop()

    @property
    def quantized(self) -> bool:
        """Whether the robot runs quantized twins when offered."""
        return self.model is not None and self.model.quantized

    @property
    def on_device(self) -> bool:
        """Whether this frame is predicted on the robot."""
        if self.model is None:
            return False
        return self.inference is Inference.DEVICE or self.model.model is not None

    async def predict(self, jpeg: bytes) -> DeviceAnswer | None:
        """The robot's own answer, when it predicts on the device and has a model."""
        if self.model is None or not self.on_device:
            return None
        return await self.model.predict(jpeg)


def as_proto(answer: DeviceAnswer | None) -> edge_pb2.DevicePrediction | None:
    """The Frame's ``device_prediction`` for an answer."""
    if answer is None:
        return None
    return edge_pb2.DevicePrediction(distance_mm=answer.distance_mm, model_name=answer.model_name,
                                     model_version=answer.model_version,
                                     inference_ms=answer.inference_ms,
                                     quantized=answer.quantized)
