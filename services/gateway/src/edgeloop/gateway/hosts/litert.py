"""A version's TFLite file run by LiteRT inside the embedded host: the robots' own runtime.

The registry converts every version it publishes to ``<model>/<version>.tflite`` beside
the SavedModel (for robots that predict on the device). The same file runs here far
cheaper than the SavedModel under TensorFlow: the `thesis` CNN costs 0.66 CPU ms per
frame in LiteRT (XNNPACK, one thread, one frame at a time) against 2.11 ms in TensorFlow
at batch 1 and 0.84 ms at batch 32 (bench/README "LiteRT in the gateway"). Its answers agree with
the SavedModel's to 0.0001 mm (``bench/device_bench.py``), and the embedded host checks that
again on every version before LiteRT takes over from TensorFlow.

Each predict thread has its own interpreter (an interpreter is not thread-safe, and
LiteRT releases the GIL while it runs, so threads predict side by side), and a batch is
run one frame after another: per frame, batch one is LiteRT's cheapest shape, and no
batch size ever re-allocates the interpreter.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

AGREEMENT_MM = 0.5
"""Largest |difference| from the SavedModel on the check frames (the on-device target)."""


class LiteRTError(Exception):
    """The TFLite file cannot be loaded or does not keep the serving contract."""


def tflite_beside(saved_model: str | Path, version: str) -> Path:
    """Where the registry publishes the TFLite file of the SavedModel folder ``saved_model``."""
    return Path(saved_model).parent / f"{version}.tflite"


class LiteRTRunner:
    """Runs one TFLite file: ``runner(images uint8 [b, h, w, 3]) -> float32 [b]`` (mm)."""

    def __init__(self, path: Path) -> None:
        try:
            self._model = path.read_bytes()
        except OSError as exc:
            raise LiteRTError(f"{path}: cannot read ({exc})") from exc
        self.path = path
        self._local = threading.local()
        self._check_contract(self._new_interpreter())

    def _new_interpreter(self) -> object:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - loaded when used

        try:
            return Interpreter(model_content=self._model, num_threads=1)
        except (ValueError, RuntimeError) as exc:
            raise LiteRTError(f"{self.path.name}: not a TFLite model LiteRT can load "
                              f"({exc})") from exc

    def _check_contract(self, interpreter: object) -> None:
        inputs = interpreter.get_input_details()  # type: ignore[attr-defined]
        outputs = interpreter.get_output_details()  # type: ignore[attr-defined]
        if len(inputs) != 1 or inputs[0]["dtype"] != np.uint8 or len(outputs) != 1:
            raise LiteRTError(f"{self.path.name}: expected one uint8 image input and one output, "
                              f"got {len(inputs)} inputs, {len(outputs)} outputs")

    def _interpreter_for(self, frame_shape: tuple[int, ...]) -> tuple[object, int, int]:
        """This thread's interpreter, sized for one frame of ``frame_shape``."""
        state = getattr(self._local, "state", None)
        if state is None or state[3] != frame_shape:
            interpreter = self._new_interpreter() if state is None else state[0]
            input_index = interpreter.get_input_details()[0]["index"]  # type: ignore[attr-defined]
            output_index = interpreter.get_output_details()[0]["index"]  # type: ignore[attr-defined]
            interpreter.resize_tensor_input(  # type: ignore[attr-defined]
                input_index, (1, *frame_shape), strict=False)
            interpreter.allocate_tensors()  # type: ignore[attr-defined]
            state = (interpreter, input_index, output_index, frame_shape)
            self._local.state = state
        return state[0], state[1], state[2]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Distances in mm of ``images``, one invoke per frame (runs in a predict thread)."""
        interpreter, input_index, output_index = self._interpreter_for(images.shape[1:])
        distances = np.empty(len(images), np.float32)
        for i in range(len(images)):
            interpreter.set_tensor(input_index, images[i:i + 1])  # type: ignore[attr-defined]
            interpreter.invoke()  # type: ignore[attr-defined]
            distances[i] = interpreter.get_tensor(output_index).reshape(-1)[0]  # type: ignore[attr-defined]
        return distances


def check_frames(height: int, width: int, count: int = 4) -> np.ndarray:
    """Frames for the agreement check: a seeded spread of colours and textures."""
    rng = np.random.default_rng(7)
    smooth = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :, np.newaxis]
    frames = rng.integers(0, 256, (count, height, width, 3)).astype(np.float32)
    frames[: count // 2] = (frames[: count // 2] * 0.2 + smooth * 0.8)
    return frames.astype(np.uint8)


def max_difference_mm(litert: np.ndarray, tensorflow: np.ndarray) -> float:
    """The largest |difference| in mm between two runtimes' answers to the same frames."""
    return float(np.max(np.abs(litert.astype(np.float64) - tensorflow.astype(np.float64))))
