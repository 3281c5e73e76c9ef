"""Camera frames that stay JPEG until the predict thread fills the model's batch with them.

At a fleet's rate the event loop is the gateway's limiting thread, and the JPEG decode was
40 % of its busy time (bench/README "Quantized answers"); handing each frame to a decode
thread and back cost the loop more than the decode (Gateway README, "Small frames decoded on
the event loop"). So a camera-sized frame bound for a model is only checked on the loop (its
markers and the size its header declares: microseconds) and travels to the micro-batcher as
an :class:`EncodedFrame`. The predict thread that runs its batch decodes it straight into the
model's input (the decoder releases the GIL), so the decode costs no hop of its own.

A frame whose data does not decode fails alone: it keeps its error, the rest of its batch is
answered, and the stream refuses it as it refused an undecodable frame before (not recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from edgeloop.gateway.validation import (
    FrameRejected,
    check_dimensions,
    check_jpeg_markers,
    undecodable_jpeg,
)
from edgeloop.platform.jpeg import decode_into, has_exif, header_size


@dataclass(eq=False)
class EncodedFrame:
    """A frame's JPEG whose header has been checked; ``shape`` is ``(height, width, 3)``."""

    jpeg: bytes
    shape: tuple[int, int, int]
    error: FrameRejected | None = None
    """Set by :meth:`decode_into` when the data does not decode."""

    def decode_into(self, out: np.ndarray) -> None:
        """Decode into ``out`` (``uint8[height, width, 3]``); if the data does not decode,
        fill ``out`` with zeros and keep the error for the frame's caller (its batch goes on)."""
        if decode_into(self.jpeg, out):
            return
        out[...] = 0
        self.error = undecodable_jpeg()

    def decode(self) -> np.ndarray:
        """The pixels, ``uint8[height, width, 3]``; raises the frame's FrameRejected."""
        out = np.empty(self.shape, np.uint8)
        self.decode_into(out)
        if self.error is not None:
            raise self.error
        return out


Frame = np.ndarray | EncodedFrame
"""What goes to a model: decoded pixels, or a JPEG decoded where the batch is filled."""


def encoded_frame(jpeg: bytes, max_pixels: int) -> EncodedFrame | None:
    """``jpeg`` as an :class:`EncodedFrame` when its header is readable, it declares at most
    ``max_pixels`` and has no Exif segment (whose orientation would change the decoded size);
    None for every other JPEG: those decode at once, as before, and fail there if they must.

    Raises FrameRejected for a JPEG whose markers or declared size are refused outright.
    """
    check_jpeg_markers(jpeg)
    size = header_size(jpeg)
    if size is None or size[0] * size[1] > max_pixels or has_exif(jpeg):
        return None
    check_dimensions(*size)
    return EncodedFrame(jpeg, (size[0], size[1], 3))


def put_frame(out: np.ndarray, frame: Frame) -> None:
    """Write ``frame`` into ``out``, one row of a model's input (decoding it if encoded)."""
    if isinstance(frame, EncodedFrame):
        frame.decode_into(out)
    else:
        out[...] = frame


def stack_frames(frames: Sequence[Frame]) -> np.ndarray:
    """``frames`` (one shape) as one ``uint8[n, height, width, 3]`` batch."""
    batch = np.empty((len(frames), *frames[0].shape), np.uint8)
    for row, frame in enumerate(frames):
        put_frame(batch[row], frame)
    return batch


def frame_error(frame: Frame) -> FrameRejected | None:
    """Why ``frame`` could not be decoded for its batch (None: it was, or needed not be)."""
    return frame.error if isinstance(frame, EncodedFrame) else None
