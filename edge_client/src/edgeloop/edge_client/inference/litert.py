"""One model version running on the robot with LiteRT (``ai-edge-litert``, successor of tf.lite).

The registry's TFLite export takes the raw camera frame (``uint8`` RGB of any size,
batch of one) and returns ``distance_mm``; the model resizes and rescales inside, so
the robot feeds exactly the decoded JPEG the platform sees. The interpreter's input
is resized only when the frame size changes (a camera's size does not).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgeloop.platform.jpeg import decode as jpeg_decode


class ModelLoadError(Exception):
    """The file is not a TFLite model with the serving contract (image -> distance_mm)."""


@dataclass(frozen=True)
class DeviceAnswer:
    """One on-device prediction: the distance, the version that made it and how long it took."""

    distance_mm: float
    model_name: str
    model_version: str
    inference_ms: float
    quantized: bool = False
    """The version's quantized twin made it, not its float file."""


def default_threads() -> int:
    """All the machine's cores (a Raspberry Pi 4/5 has four)."""
    return os.cpu_count() or 1


def decode_rgb(jpeg: bytes) -> np.ndarray:
    """The JPEG as RGB ``uint8[h, w, 3]``, decoded as the gateway decodes it."""
    rgb = jpeg_decode(jpeg, "RGB")
    if rgb is None:
        raise ValueError("frame does not decode as a JPEG image")
    return rgb


class LiteRTModel:
    """A loaded TFLite model version; :meth:`predict` is thread-safe (one frame at a time)."""

    def __init__(self, path: Path, model_name: str, model_version: str,
                 threads: int | None = None, quantized: bool = False) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - heavy import

        self.model_name = model_name
        self.model_version = model_version
        self.quantized = quantized
        self.threads = threads or default_threads()
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=self.threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name}: not a TFLite model LiteRT can load "
                                 f"({exc})") from exc
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or inputs[0]["dtype"] != np.uint8 or len(outputs) != 1:
            raise ModelLoadError(f"{path.name}: expected one uint8 image input and one output, "
                                 f"got {len(inputs)} inputs, {len(outputs)} outputs")
        self._input = inputs[0]["index"]
        self._output = outputs[0]["index"]
        self._shape: tuple[int, ...] | None = None
        self._lock = threading.Lock()

    def predict_rgb(self, rgb: np.ndarray) -> float:
        """Distance in mm for one RGB ``uint8[h, w, 3]`` image."""
        batch = rgb[np.newaxis, ...]
        with self._lock:
            if batch.shape != self._shape:
                self._interpreter.resize_tensor_input(self._input, batch.shape, strict=False)
                self._interpreter.allocate_tensors()
                self._shape = batch.shape
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            return float(self._interpreter.get_tensor(self._output).reshape(-1)[0])

    def predict(self, jpeg: bytes) -> DeviceAnswer:
        """Decode and predict one frame, timed."""
        started = time.perf_counter()
        distance = self.predict_rgb(decode_rgb(jpeg))
        return DeviceAnswer(distance, self.model_name, self.model_version,
                            (time.perf_counter() - started) * 1000, self.quantized)
