"""Image statistics computed with OpenCV: the numbers the drift monitor watches.

Every statistic is computed on the full-resolution decoded image (no downscaled copy:
sharpness, edge density and keypoint counts depend on scale, and the means are cheap
at full size anyway). Definitions, fixed so training references and live windows agree:

- ``mean_r``/``mean_g``/``mean_b``: channel means, 0-255.
- ``hue``: arithmetic mean of OpenCV's HSV hue (0-179). Hue is circular; like the
  thesis we take the plain mean, so a red scene that wraps 179→0 averages to the middle.
- ``saturation``/``brightness``: mean HSV S and V rescaled to 0-100 (S/255*100), the
  thesis's scale (its band [40, 60]).
- ``contrast``: RMS contrast, the population standard deviation of the grey image.
- ``sharpness``: variance of the grey image's 3x3 Laplacian (computed in int16, which
  holds every value exactly: |4*255| < 2**15).
- ``edge_density``: fraction of pixels on Canny edges, thresholds 100/200.
- ``keypoints``: number of ORB keypoints with OpenCV's defaults (at most 500).
- ``entropy``: Shannon entropy of the 256-bin grey histogram, in bits (0-8).

OpenCV releases the GIL, so callers run :func:`jpeg_stats` on a thread pool.
"""

from __future__ import annotations

import threading
from dataclasses import astuple, dataclass, fields

import cv2
import numpy as np
from edgeloop.platform.errors import InvalidArgument

CANNY_LOW, CANNY_HIGH = 100, 200
MAX_SIDE = 4096
"""Largest accepted width or height; a camera frame is far smaller, a decompression bomb is not."""
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_local = threading.local()


@dataclass(frozen=True, slots=True)
class ImageStats:
    """The statistics of one image; field names are the ``ImageStats`` proto fields."""

    mean_r: float
    mean_g: float
    mean_b: float
    hue: float
    saturation: float
    brightness: float
    contrast: float
    sharpness: float
    edge_density: float
    keypoints: int
    entropy: float

    def values(self) -> tuple[float | int, ...]:
        """The statistics in :data:`STAT_NAMES` order."""
        return astuple(self)


STAT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ImageStats))


@dataclass(frozen=True, slots=True)
class DecodedStats:
    """Statistics of a decoded JPEG with its dimensions."""

    stats: ImageStats
    width: int
    height: int


def _orb() -> cv2.ORB:
    # One detector per thread: detectors keep internal buffers.
    detector = getattr(_local, "orb", None)
    if detector is None:
        detector = _local.orb = cv2.ORB_create()
    return detector


def _entropy(grey: np.ndarray) -> float:
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    p = hist[hist > 0] / grey.size
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def image_stats(bgr: np.ndarray) -> ImageStats:
    """The statistics of a decoded 8-bit BGR image (OpenCV's channel order)."""
    mean_b, mean_g, mean_r, _ = cv2.mean(bgr)
    mean_h, mean_s, mean_v, _ = cv2.mean(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    _, grey_std = cv2.meanStdDev(grey)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))
    edges = cv2.countNonZero(cv2.Canny(grey, CANNY_LOW, CANNY_HIGH))
    return ImageStats(
        mean_r=mean_r, mean_g=mean_g, mean_b=mean_b,
        hue=mean_h, saturation=mean_s / 255.0 * 100.0, brightness=mean_v / 255.0 * 100.0,
        contrast=float(grey_std[0, 0]), sharpness=float(lap_std[0, 0]) ** 2,
        edge_density=edges / grey.size, keypoints=len(_orb().detect(grey, None)),
        entropy=_entropy(grey),
    )


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    """Decode a JPEG to BGR; :class:`InvalidArgument` (field ``jpeg``) says why it cannot be."""
    if not jpeg:
        raise InvalidArgument("jpeg", "empty")
    if not jpeg.startswith(_JPEG_SOI):
        raise InvalidArgument("jpeg", "not a JPEG (no start-of-image marker)")
    # libjpeg fills a truncated image with grey and returns it; refuse it instead. 0xFFD9 can
    # only be an end-of-image marker (entropy-coded data stuffs every 0xFF), so look near the end.
    if _JPEG_EOI not in jpeg[-4096:]:
        raise InvalidArgument("jpeg", "truncated (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidArgument("jpeg", "cannot be decoded")
    height, width = image.shape[:2]
    if width > MAX_SIDE or height > MAX_SIDE or min(width, height) < 8:
        raise InvalidArgument("jpeg", f"{width}x{height} is outside 8..{MAX_SIDE} pixels a side")
    return image


def jpeg_stats(jpeg: bytes) -> DecodedStats:
    """Decode ``jpeg`` and compute its statistics."""
    image = decode_jpeg(jpeg)
    height, width = image.shape[:2]
    return DecodedStats(image_stats(image), width, height)
