"""Per-frame validation: every check names the offending field and leaves the stream alive.

A refused frame raises :class:`FrameRejected`; the stream turns it into a ``FrameError``
and carries on with the next frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
import numpy as np
from edgeloop.contracts.edge.v1 import edge_pb2
from edgeloop.platform.errors import EdgeloopError, InvalidArgument
from edgeloop.platform.jpeg import decode as jpeg_decode
from google.protobuf.timestamp_pb2 import Timestamp

MIN_TIMESTAMP_S = -62_135_596_800
"""0001-01-01T00:00:00Z, the earliest google.protobuf.Timestamp."""
MAX_TIMESTAMP_S = 253_402_300_799
"""9999-12-31T23:59:59Z, the latest google.protobuf.Timestamp."""
MIN_SIDE_PX = 16
"""Smaller images carry too little to predict from (the model's input is 75x100)."""
MAX_SIDE_PX = 4096
"""Larger images are not camera frames of a small robot; refuse before allocating."""

Reason = edge_pb2.FrameErrorReason


class FrameRejected(EdgeloopError):
    """One frame is refused; carries the ``FrameError`` reason and the status code to report."""

    def __init__(self, reason: int, message: str,
                 code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code

    def to_proto(self, seq: int) -> edge_pb2.FrameError:
        """The ``FrameError`` answering frame ``seq``."""
        return edge_pb2.FrameError(seq=seq, reason=self.reason, code=self.code.value[0],
                                   message=self.message)


def _invalid(reason: int, field: str, problem: str) -> FrameRejected:
    return FrameRejected(reason, InvalidArgument(field, problem).message)


def check_envelope(frame: edge_pb2.Frame, max_frame_bytes: int, last_seq: int | None) -> None:
    """Cheap checks done in order on the event loop: sequence, size, sensor value."""
    if last_seq is not None and frame.seq <= last_seq:
        raise _invalid(Reason.FRAME_ERROR_REASON_OUT_OF_ORDER, "frame.seq",
                       f"{frame.seq} does not increase (last accepted was {last_seq})")
    if len(frame.jpeg) > max_frame_bytes:
        raise _invalid(Reason.FRAME_ERROR_REASON_TOO_LARGE, "frame.jpeg",
                       f"{len(frame.jpeg)} bytes exceed the limit of {max_frame_bytes} bytes")
    if not frame.jpeg:
        raise _invalid(Reason.FRAME_ERROR_REASON_INVALID_JPEG, "frame.jpeg", "is empty")
    if frame.HasField("captured_at") and not _valid_timestamp(frame.captured_at):
        raise _invalid(Reason.FRAME_ERROR_REASON_INVALID_TIMESTAMP, "frame.captured_at",
                       f"seconds={frame.captured_at.seconds} nanos={frame.captured_at.nanos} is "
                       "not a valid timestamp (years 1-9999, nanos within [0, 999999999])")
    sensor = frame.sensor_mm
    if frame.HasField("sensor_mm") and not (math.isfinite(sensor) and sensor >= 0):
        raise _invalid(Reason.FRAME_ERROR_REASON_INVALID_SENSOR, "frame.sensor_mm",
                       f"{frame.sensor_mm!r} is not a finite, non-negative distance")


def _valid_timestamp(stamp: Timestamp) -> bool:
    # The range google.protobuf.Timestamp documents; outside it, conversions raise.
    return (MIN_TIMESTAMP_S <= stamp.seconds <= MAX_TIMESTAMP_S
            and 0 <= stamp.nanos <= 999_999_999)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded frame: RGB ``uint8[height, width, 3]``."""

    rgb: np.ndarray


def decode_jpeg(jpeg: bytes) -> DecodedImage:
    """Decode ``jpeg`` to RGB and check its dimensions (~0.2 ms at 320x240; a large frame
    costs more: :mod:`edgeloop.gateway.decoding` sends those to threads)."""
    _check_jpeg_header(jpeg)
    rgb = jpeg_decode(jpeg, "RGB")
    if rgb is None:
        raise _invalid(Reason.FRAME_ERROR_REASON_INVALID_JPEG, "frame.jpeg",
                       "does not decode as a JPEG image")
    height, width = rgb.shape[:2]
    if not (MIN_SIDE_PX <= height <= MAX_SIDE_PX and MIN_SIDE_PX <= width <= MAX_SIDE_PX):
        raise _invalid(Reason.FRAME_ERROR_REASON_BAD_DIMENSIONS, "frame.jpeg",
                       f"image is {width}x{height} px; each side must be within "
                       f"[{MIN_SIDE_PX}, {MAX_SIDE_PX}]")
    return DecodedImage(rgb)


def _check_jpeg_header(jpeg: bytes) -> None:
    # cv2.imdecode also accepts PNG, BMP, ...; the contract says JPEG, so check the
    # SOI marker first.
    if not jpeg.startswith(b"\xff\xd8\xff"):
        raise _invalid(Reason.FRAME_ERROR_REASON_INVALID_JPEG, "frame.jpeg",
                       "is not a JPEG (missing the FF D8 FF start-of-image marker)")
    # libjpeg fills a truncated image with grey and returns it, and features refuses
    # such frames; refuse them here so the robot hears it. FF D9 can only be the
    # end-of-image marker (entropy-coded data stuffs every FF), so look near the end.
    if jpeg.find(b"\xff\xd9", max(0, len(jpeg) - 4096)) < 0:  # no slice: no copy
        raise _invalid(Reason.FRAME_ERROR_REASON_INVALID_JPEG, "frame.jpeg",
                       "is truncated (no FF D9 end-of-image marker)")
