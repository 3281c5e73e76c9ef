"""Image statistics computed with OpenCV: the numbers the drift monitor watches.

:func:`jpeg_stats` is the one definition: the features service stores what it returns,
the trainer's training reference (``reference.json``) is built from those stored values,
and ``bench/drift_calibration.py`` calls it too, so live windows and references always
agree. Do not compute statistics any other way.

Every statistic is computed on the JPEG decoded at **half resolution** by libjpeg's DCT
scaling (:func:`edgeloop.platform.jpeg.decode` with ``reduction=2``, the pixels of
OpenCV's ``IMREAD_REDUCED_COLOR_2``: each 8x8 block is inverse-transformed to 4x4,
so a 320x240 frame is measured as 160x120). The entropy-coded data is still read whole,
but the inverse DCT, colour conversion and every statistic see a quarter of the pixels.
On simulator frames the means barely move (saturation by < 0.1 per frame on the 0-100
scale, hue by < 0.1 on average); sharpness, edge density and keypoints are defined at this
scale and their values differ from full-size ones (a quarter-resolution decode, ``_4``,
halved or worse their response to a focus change, hence half). Measurements:
``bench/README.md`` ("Cheaper statistics (issue 11)", "Drift calibration"). Definitions,
fixed so training references and live windows agree:

- ``mean_r``/``mean_g``/``mean_b``: channel means, 0-255.
- ``hue``: arithmetic mean of OpenCV's HSV hue (0-179). Hue is circular; like the
  thesis we take the plain mean, so a red scene that wraps 179→0 averages to the middle.
- ``saturation``/``brightness``: mean HSV S and V rescaled to 0-100 (S/255*100), the
  thesis's scale (its band [40, 60]).
- ``contrast``: RMS contrast, the population standard deviation of the grey image.
- ``sharpness``: variance of the grey image's 3x3 Laplacian (computed in int16, which
  holds every value exactly: |4*255| < 2**15).
- ``edge_density``: fraction of pixels on Canny edges, thresholds 75/150. (Until issue 11:
  100/200 at full size. At half size the simulator's wall/floor boundary has a gradient
  near 200, so with 100/200 it was found in some drives and lost in others, and two
  undrifted beige drives differed enough for ``js_edge_density`` to fire; 75/150 finds it
  steadily.)
- ``keypoints``: number of FAST-9 corners (threshold 10, non-maximum suppression) of the
  grey image, at most 500. Suppression keeps strict local maxima of the corner score, so
  a perfectly sharp synthetic corner (a plateau of equal scores) counts 0; camera images
  have no such plateaus. (Until issue 11: ORB with OpenCV's defaults, 8 pyramid levels,
  at most 500, on the full-size image. FAST on the half-size image costs ~1/30 of that;
  over simulator frames of varied texture its count rank-correlates 0.72 with the ORB
  count. Its cost grows with the pixels only, bounded by ``MAX_SIDE``.)
- ``entropy``: Shannon entropy of the 256-bin grey histogram, in bits (0-8).

``width`` and ``height`` are the full size, read from the JPEG's frame header (SOF)
before anything is decoded, so the 8..``MAX_SIDE`` check refuses a decompression bomb
without decoding it. EXIF orientation is not applied (robot cameras do not write it, and
no statistic changes when the image is turned by 90°): the size is the coded one.

OpenCV releases the GIL, so callers run :func:`jpeg_stats` on a thread pool.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, fields

import cv2
import numpy as np
from edgeloop.platform.errors import InvalidArgument
from edgeloop.platform.jpeg import decode as jpeg_decode

CANNY_LOW, CANNY_HIGH = 75, 150
FAST_THRESHOLD = 10
MAX_KEYPOINTS = 500
"""Cap of the keypoint count (ORB's default cap before issue 11): the same 0..500 range."""
MAX_SIDE = 4096
"""Largest accepted width or height; a camera frame is far smaller, a decompression bomb is not."""
MIN_SIDE = 8
REDUCTION = 2
"""The statistics are measured on the image decoded at 1/REDUCTION of its width and height."""
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic):
# C4 (DHT), C8 (reserved) and CC (DAC) share the range but are not frame headers.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field
_SOS, _EOI = 0xDA, 0xD9
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
        # Spelled out: dataclasses.astuple deep-copies field by field, ~100x slower, and
        # this runs for every stored observation.
        return (self.mean_r, self.mean_g, self.mean_b, self.hue, self.saturation,
                self.brightness, self.contrast, self.sharpness, self.edge_density,
                self.keypoints, self.entropy)


STAT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ImageStats))


@dataclass(frozen=True, slots=True)
class DecodedStats:
    """Statistics of a decoded JPEG with its full-size dimensions."""

    stats: ImageStats
    width: int
    height: int


def _fast() -> cv2.FastFeatureDetector:
    # One detector per thread: OpenCV does not promise that detectors are thread-safe.
    detector = getattr(_local, "fast", None)
    if detector is None:
        detector = _local.fast = cv2.FastFeatureDetector_create(
            threshold=FAST_THRESHOLD, nonmaxSuppression=True)
    return detector


def _entropy(grey: np.ndarray) -> float:
    # -sum(p log2 p) with p = c / n, rearranged to log2 n - sum(c log2 c) / n: fewer
    # array operations on the 256 bins (each costs more than the arithmetic).
    counts = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    counts = counts[counts > 0].astype(np.float64)
    # max: one grey level gives 0 up to rounding, never -0.0 or -1e-16
    return max(0.0, float(np.log2(grey.size) - counts @ np.log2(counts) / grey.size))


def image_stats(bgr: np.ndarray) -> ImageStats:
    """The statistics of a decoded 8-bit BGR image (OpenCV's channel order), as given.

    This measures the pixels it gets; the scale the statistics are defined at is
    :func:`jpeg_stats`'s half-resolution decode, so the service never calls this alone.
    """
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
        edge_density=edges / grey.size,
        keypoints=min(len(_fast().detect(grey, None)), MAX_KEYPOINTS),
        entropy=_entropy(grey),
    )


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """``(width, height)`` from the JPEG's frame header, without decoding anything.

    Walks the marker segments from the start-of-image marker to the first start-of-frame;
    :class:`InvalidArgument` (field ``jpeg``) when the segments end or break before one.
    """
    pos, end = 2, len(jpeg)
    while pos + 4 <= end:
        if jpeg[pos] != 0xFF:
            raise InvalidArgument("jpeg", f"cannot be decoded (no marker at byte {pos})")
        marker = jpeg[pos + 1]
        if marker == 0xFF:  # a fill byte before the marker
            pos += 1
        elif marker in _STANDALONE_MARKERS:
            pos += 2
        elif marker in (_SOS, _EOI):
            break  # image data (or its end) before any frame header
        elif marker in _SOF_MARKERS:
            if pos + 9 > end:
                break
            height, width = struct.unpack_from(">HH", jpeg, pos + 5)
            return width, height
        else:  # any other segment: skip it by its length (which counts its own two bytes)
            pos += 2 + struct.unpack_from(">H", jpeg, pos + 2)[0]
    raise InvalidArgument("jpeg", "cannot be decoded (no frame header)")


def _check_markers(jpeg: bytes) -> None:
    if not jpeg:
        raise InvalidArgument("jpeg", "empty")
    if not jpeg.startswith(_JPEG_SOI):
        raise InvalidArgument("jpeg", "not a JPEG (no start-of-image marker)")
    # libjpeg fills a truncated image with grey and returns it; refuse it instead. 0xFFD9 can
    # only be an end-of-image marker (entropy-coded data stuffs every 0xFF), so look near the end.
    if _JPEG_EOI not in jpeg[-4096:]:
        raise InvalidArgument("jpeg", "truncated (no end-of-image marker)")


def decode_jpeg(jpeg: bytes) -> tuple[np.ndarray, int, int]:
    """The half-resolution BGR decode of ``jpeg`` and its full ``width``, ``height``.

    :class:`InvalidArgument` (field ``jpeg``) says why it cannot be decoded: not a JPEG,
    truncated, a size outside 8..``MAX_SIDE`` a side (checked on the header, before
    decoding), or data libjpeg refuses.
    """
    _check_markers(jpeg)
    width, height = jpeg_size(jpeg)
    if width > MAX_SIDE or height > MAX_SIDE or min(width, height) < MIN_SIDE:
        raise InvalidArgument(
            "jpeg", f"{width}x{height} is outside {MIN_SIDE}..{MAX_SIDE} pixels a side")
    image = jpeg_decode(jpeg, "BGR", reduction=REDUCTION, apply_orientation=False)
    if image is None:
        raise InvalidArgument("jpeg", "cannot be decoded")
    # libjpeg scales to ceil(side / 2); anything else means the header we read is not the
    # frame libjpeg decoded (a second frame header, say): the reported size would be wrong.
    expected = (-(-height // REDUCTION), -(-width // REDUCTION))
    if image.shape[:2] != expected:
        decoded = f"{image.shape[1]}x{image.shape[0]}"
        raise InvalidArgument("jpeg", f"cannot be decoded consistently (header {width}x{height}, "
                                      f"decoded {decoded} at 1/{REDUCTION})")
    return image, width, height


def jpeg_stats(jpeg: bytes) -> DecodedStats:
    """Decode ``jpeg`` at half resolution and compute its statistics; the full size with them."""
    image, width, height = decode_jpeg(jpeg)
    return DecodedStats(image_stats(image), width, height)
