"""What a model takes, without TensorFlow: the input size, the architectures' names, the
target scale and the resize every model starts with.

The trainer process itself never imports TensorFlow (its trial workers and a sweep's
child process do): it validates architectures and pre-resizes a snapshot's frames with
this module alone. :func:`resize_frames` is the model's own first layer (Keras
``Resizing``, i.e. TensorFlow's half-pixel bilinear resize, on the frame cast to float32)
written in NumPy with the same float32 arithmetic
in the same order, so the trials see bit for bit what the served model computes from the
raw frame; ``tests/test_preresize.py`` checks it against the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

INPUT_HEIGHT = 75
INPUT_WIDTH = 100
INPUT_SHAPE = (INPUT_HEIGHT, INPUT_WIDTH, 3)
"""The shape every model works at: frames of any size are resized to it first."""
TARGET_SCALE_MM = 100.0
"""Targets are trained in units of 100 mm."""


@dataclass(frozen=True)
class Architecture:
    """A named shape of the conv stack: how many blocks and how the dense head looks."""

    conv_blocks: int
    convs_per_block: int
    dense_layers: int


ARCHITECTURES: dict[str, Architecture] = {
    # the thesis's network: three conv/pool blocks, one dense layer
    "thesis": Architecture(conv_blocks=3, convs_per_block=1, dense_layers=1),
    # fewer blocks for small devices and quick sweeps
    "small": Architecture(conv_blocks=2, convs_per_block=1, dense_layers=1),
    # two convs per block and two dense layers: more capacity for varied floors
    "wide": Architecture(conv_blocks=3, convs_per_block=2, dense_layers=2),
}


@cache
def _sampling(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper source index and the float32 weight of the upper, per output pixel.

    TensorFlow's ``HalfPixelScaler``: source = (i + 0.5) * (in / out) - 0.5, in float32.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    source = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    below = np.floor(source)
    lower = np.maximum(below, 0).astype(np.intp)
    upper = np.minimum(np.ceil(source), in_size - 1).astype(np.intp)
    return lower, upper, (source - below).astype(np.float32)


def _resize_chunk(frames: np.ndarray) -> np.ndarray:
    """One chunk of uint8 [n, h, w, 3] frames resized to float32 [n, 75, 100, 3]."""
    top_row, bottom_row, y_weight = _sampling(frames.shape[1], INPUT_HEIGHT)
    left, right, x_weight = _sampling(frames.shape[2], INPUT_WIDTH)
    x_weight = x_weight[None, None, :, None]
    top, bottom = frames[:, top_row], frames[:, bottom_row]

    def across(rows: np.ndarray) -> np.ndarray:
        near = rows[:, :, left].astype(np.float32)
        return near + (rows[:, :, right].astype(np.float32) - near) * x_weight

    upper_line, lower_line = across(top), across(bottom)
    return upper_line + (lower_line - upper_line) * y_weight[None, :, None, None]


def resize_frames(frames: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Frames uint8 [n, h, w, 3] as the model sees them after its resize: float32 [n, 75, 100, 3].

    Exactly the model's first step (cast to float32, then its ``Resizing`` layer), so a
    model fed these numbers computes what it computes on the raw frames. They stay float32:
    rounding them back to uint8 would change what the network sees. ``chunk`` frames at a
    time bound the temporary copies (a memory-mapped array is read a chunk at a time).
    """
    out = np.empty((len(frames), *INPUT_SHAPE), dtype=np.float32)
    for start in range(0, len(frames), chunk):
        part = np.asarray(frames[start:start + chunk])
        out[start:start + len(part)] = _resize_chunk(part)
    return out
