"""A version's TFLite file run by LiteRT inside the embedded host: the robots' own runtime.

The registry converts every version it publishes to ``<model>/<version>.tflite`` beside the
SavedModel (for robots that predict on the device), and to a dynamic-range quantized twin,
``<version>.quantized.tflite``, that the gateway prefers: its int8 convolutions cost 0.23
CPU ms a frame against the float file's 0.49 (bench/README "Quantized answers"). The float
file runs here far cheaper than the SavedModel under TensorFlow: the `thesis` CNN costs 0.66
CPU ms per frame in LiteRT (XNNPACK, one thread, frame by frame) against 2.11 ms in
TensorFlow at batch 1 and 0.84 ms at batch 32 (bench/README "LiteRT in the gateway"). Its
answers agree with the SavedModel's to 0.0001 mm (``bench/device_bench.py``), and the
embedded host checks that again on every version before LiteRT takes over from TensorFlow.

Each predict thread has its own interpreters (an interpreter is not thread-safe, and
LiteRT releases the GIL while it runs, so threads predict side by side). A batch runs in
chunks of :data:`CHUNK_SIZES` frames, one ``invoke`` per chunk, each size on an
interpreter allocated for it once: a batch of 13 is 8 + 4 + 1. Per frame, a chunk costs
what single frames cost (0.59 against 0.60 CPU ms at 8), but the thread takes the GIL
back once per chunk instead of once per frame. That matters under load: while the event
loop runs Python, a thread waiting for the GIL waits up to the switch interval, so a
frame-at-a-time batch took 2.3 ms of wall time per frame in the full stack at 100 robots
x 4 fps, and with a busy Python thread beside it 6 ms per frame against 0.9-1.3 ms for
chunks of 8-32 (bench/README "The model's GIL convoy").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from edgeloop.platform.tensorflow_import import native_lines_logged

AGREEMENT_MM = 0.5
"""Largest |difference| from the SavedModel on the check frames (the on-device target)."""
QUANTIZED_AGREEMENT_MM = 1.0
"""The same for the quantized file: its answers are not the SavedModel's to the bit (0.04-0.19
mm apart on average over a demo's frames, at most 0.22-0.73 mm, bench/README "Quantized
answers"), but its error against the labels is the same to 0.06 mm; 1 mm is well under the
model's own error and the range sensor's."""
CHUNK_SIZES = (8, 4, 2, 1)
"""Frames per ``invoke``, largest first. Chunks of 8 keep most of the gain at +33 MiB of
interpreters per predict thread; chunks of 16 would hold +63 MiB for ~5 % less CPU per frame
(0.56 against 0.59 ms, measured alone)."""


def chunks(count: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` of the chunks that run ``count`` frames, sizes from CHUNK_SIZES."""
    start = 0
    for size in CHUNK_SIZES:
        while count - start >= size:
            yield start, size
            start += size


class LiteRTError(Exception):
    """The TFLite file cannot be loaded or does not keep the serving contract."""


def tflite_beside(saved_model: str | Path, version: str) -> Path:
    """Where the registry publishes the TFLite file of the SavedModel folder ``saved_model``."""
    return Path(saved_model).parent / f"{version}.tflite"


def quantized_beside(saved_model: str | Path, version: str) -> Path:
    """Where the registry publishes the quantized TFLite file of ``saved_model``; it writes
    it before the float file, so it is there, if at all, once that one is."""
    return Path(saved_model).parent / f"{version}.quantized.tflite"


_ANNOUNCED = threading.Event()


def _allocate(interpreter: object) -> None:
    if _ANNOUNCED.is_set():
        interpreter.allocate_tensors()  # type: ignore[attr-defined]
        return
    # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when the
    # process's first interpreter allocates: a record of the log, not a raw line in it
    with native_lines_logged():
        interpreter.allocate_tensors()  # type: ignore[attr-defined]
    _ANNOUNCED.set()


class LiteRTRunner:
    """Runs one TFLite file: ``runner(frames) -> float32 [b]`` (mm), where ``frames`` is a
    ``uint8 [b, h, w, 3]`` array or a sequence of ``b`` frames ``uint8 [h, w, 3]`` of one shape."""

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

    def _interpreter_for(self, shape: tuple[int, ...]) -> tuple[object, int, int]:
        """This thread's interpreter for input ``shape`` (chunk size first), allocated once.

        A thread keeps the interpreters of one frame size: frames of another size (another
        camera) replace them, so the set stays bounded.
        """
        interpreters = getattr(self._local, "interpreters", None)
        if interpreters is None or getattr(self._local, "frame_shape", None) != shape[1:]:
            interpreters = self._local.interpreters = {}
            self._local.frame_shape = shape[1:]
        state = interpreters.get(shape)
        if state is None:
            interpreter = self._new_interpreter()
            input_index = interpreter.get_input_details()[0]["index"]  # type: ignore[attr-defined]
            output_index = interpreter.get_output_details()[0]["index"]  # type: ignore[attr-defined]
            interpreter.resize_tensor_input(input_index, shape, strict=False)  # type: ignore[attr-defined]
            _allocate(interpreter)
            state = interpreters[shape] = (interpreter, input_index, output_index)
        return state

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Distances in mm of ``frames``, one invoke per chunk (runs in a predict thread).

        Each frame is copied once, straight into the interpreter's input tensor: the
        micro-batcher hands over its frames as they were decoded, so no stacked batch is
        built first (that copy ran on the event loop, ~10 % of its time at a fleet's rate).
        """
        distances = np.empty(len(frames), np.float32)
        if not len(frames):
            return distances
        shape = frames[0].shape
        for start, size in chunks(len(frames)):
            interpreter, input_index, output_index = self._interpreter_for((size, *shape))
            _fill_input(interpreter, input_index, frames[start:start + size])
            interpreter.invoke()  # type: ignore[attr-defined]
            distances[start:start + size] = interpreter.get_tensor(output_index).reshape(-1)  # type: ignore[attr-defined]
        return distances


def _fill_input(interpreter: object, input_index: int, frames: Sequence[np.ndarray]) -> None:
    """Copy ``frames`` into the input tensor in place (no view may outlive this: LiteRT
    refuses to ``invoke`` while numpy holds its buffers)."""
    buffer = interpreter.tensor(input_index)()  # type: ignore[attr-defined]
    try:
        for row, frame in enumerate(frames):
            if frame.shape != buffer.shape[1:]:  # numpy would broadcast some shapes silently
                raise ValueError(f"a frame of shape {list(frame.shape)} in a batch of "
                                 f"{list(buffer.shape[1:])}")
            buffer[row] = frame
    finally:
        del buffer


def check_frames(height: int, width: int, count: int = 4) -> np.ndarray:
    """Frames for the agreement check before the host has served camera frames: a seeded
    spread of colours and textures (harder on a quantized twin than camera frames are)."""
    rng = np.random.default_rng(7)
    smooth = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :, np.newaxis]
    frames = rng.integers(0, 256, (count, height, width, 3)).astype(np.float32)
    frames[: count // 2] = (frames[: count // 2] * 0.2 + smooth * 0.8)
    return frames.astype(np.uint8)


def max_difference_mm(litert: np.ndarray, tensorflow: np.ndarray) -> float:
    """The largest |difference| in mm between two runtimes' answers to the same frames."""
    return float(np.max(np.abs(litert.astype(np.float64) - tensorflow.astype(np.float64))))
