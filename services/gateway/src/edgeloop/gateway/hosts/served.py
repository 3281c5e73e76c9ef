"""The last camera frames a host served: what a TFLite file is checked on before it answers.

A version's TFLite file (or its quantized twin) is trusted only once its answers agree with
the SavedModel's on frames like the ones it will answer. Synthetic textures are harder on a
quantized twin than camera frames are, so the check runs on the first frame of each of the
last batches served, once enough of one size were kept, and on synthetic frames before.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from edgeloop.gateway.hosts import litert


class ServedFrames:
    """The first frame of each of the last ``kept`` batches (references, not copies: a
    decoded frame is never written again)."""

    def __init__(self, kept: int = 8) -> None:
        self._frames: deque[np.ndarray] = deque(maxlen=kept)

    def add(self, frame: np.ndarray) -> None:
        """Keep ``frame`` (``uint8 [h, w, 3]``), dropping the oldest beyond ``kept``."""
        self._frames.append(frame)

    def check_frames(self, height: int, width: int) -> tuple[np.ndarray, str]:
        """The frames to check a file on and which they are: ``served`` (``kept`` frames of
        the newest one's size) or, before enough were, ``synthetic`` ones of ``height`` x
        ``width``."""
        if self._frames:
            shape = self._frames[-1].shape
            served = [frame for frame in self._frames if frame.shape == shape]
            if len(served) == self._frames.maxlen:
                return np.stack(served), "served"
        return litert.check_frames(height, width), "synthetic"
