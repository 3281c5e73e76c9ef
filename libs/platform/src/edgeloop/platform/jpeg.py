"""JPEG decoding: libjpeg-turbo's TurboJPEG API (simplejpeg), OpenCV where the two differ.

Every part that decodes camera frames (the gateway before the model, the features service
for the statistics, the trainer for a snapshot) decodes through :func:`decode`, so they see
the same pixels. simplejpeg and ``cv2.imdecode`` both run libjpeg-turbo with its default
(accurate) inverse DCT and upsampling and give the same pixels bit for bit
(``libs/platform/tests/test_jpeg.py``), but simplejpeg writes RGB directly (OpenCV decodes to
BGR and needs a second pass to swap the channels) and costs less CPU per frame: 0.22
against 0.32 ms for a 320x240 frame to RGB, 0.17 against 0.21 at half size
(``bench/jpeg_bench.py``). It releases the GIL while it decodes.

Two kinds of input go to OpenCV, so that what decoded before decodes to the same pixels:
a JPEG with an Exif segment, unless orientation is ignored (OpenCV turns the image as its
orientation tag says; TurboJPEG does not), and one TurboJPEG refuses or warns about
(OpenCV decodes what libjpeg can and refuses what it cannot).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import simplejpeg

Order = Literal["RGB", "BGR"]
REDUCTIONS = (1, 2, 4, 8)
"""Scales libjpeg decodes at directly (its DCT scaling): 1/1, 1/2, 1/4, 1/8."""
_EXIF = b"Exif\x00\x00"
_EXIF_SEARCH = 65_536  # APP1 comes before the image data; its segment is at most 64 KiB
_OPENCV_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                   4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode(jpeg: bytes, order: Order = "RGB", reduction: int = 1,
           apply_orientation: bool = True) -> np.ndarray | None:
    """``jpeg`` as ``uint8[height, width, 3]`` in channel ``order``, or None if it does not decode.

    ``reduction`` 2, 4 or 8 decodes at that fraction of each side (rounded up), as
    OpenCV's ``IMREAD_REDUCED_COLOR_<n>`` does. ``apply_orientation`` turns the image as its
    Exif orientation says (OpenCV's default); False decodes the pixels as stored.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, not {reduction}")
    if not jpeg:
        return None
    if not (apply_orientation and jpeg.find(_EXIF, 0, _EXIF_SEARCH) >= 0):
        try:
            return _turbojpeg(jpeg, order, reduction)
        except ValueError:
            pass  # refused or warned about: OpenCV decides, as it did before
    return _opencv(jpeg, order, reduction, apply_orientation)


def pixels(jpeg: bytes) -> int | None:
    """Width x height as ``jpeg``'s header declares it, without decoding (None: no header).

    A decode's cost follows the declared size, so this tells a cheap frame from a costly one
    for a few microseconds."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(jpeg)
    except ValueError:
        return None
    return int(height) * int(width)


def _turbojpeg(jpeg: bytes, order: Order, reduction: int) -> np.ndarray:
    if reduction == 1:
        return simplejpeg.decode_jpeg(jpeg, colorspace=order)
    height, width, _, _ = simplejpeg.decode_jpeg_header(jpeg)
    wanted = (-(-height // reduction), -(-width // reduction))
    # simplejpeg picks the smallest libjpeg scale at least this large: exactly 1/reduction
    image = simplejpeg.decode_jpeg(jpeg, colorspace=order, min_height=wanted[0],
                                   min_width=wanted[1])
    if image.shape[:2] != wanted:
        raise ValueError(f"decoded {image.shape[1]}x{image.shape[0]}, wanted 1/{reduction}")
    return image


def _opencv(jpeg: bytes, order: Order, reduction: int,
            apply_orientation: bool) -> np.ndarray | None:
    flags = _OPENCV_REDUCED[reduction]
    if not apply_orientation:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    if image is None or order == "BGR":
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
