"""Frames that stay JPEG until their batch: which frames, what is refused at once, and how
an undecodable one fails alone."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import simplejpeg
from edgeloop.gateway.encoded import (
    EncodedFrame,
    encoded_frame,
    frame_error,
    put_frame,
    stack_frames,
)
from edgeloop.gateway.validation import FrameRejected, Reason
from edgeloop.platform.jpeg import decode
from edgeloop.testing.jpegs import without_quantization_tables

VGA = 640 * 480


def _jpeg(height: int = 240, width: int = 320, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return simplejpeg.encode_jpeg(image, quality=90, colorspace="RGB")


def _with_exif(jpeg: bytes) -> bytes:
    body = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 0) + struct.pack("<I", 0)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def test_a_camera_frame_stays_encoded_with_the_shape_its_header_declares() -> None:
    jpeg = _jpeg(240, 320)
    frame = encoded_frame(jpeg, VGA)
    assert isinstance(frame, EncodedFrame) and frame.jpeg is jpeg
    assert frame.shape == (240, 320, 3)
    assert np.array_equal(frame.decode(), decode(jpeg)) and frame_error(frame) is None


@pytest.mark.parametrize("jpeg", [
    _jpeg(480, 800),  # larger than the limit: decodes on the decode threads
    _with_exif(_jpeg()),  # an Exif orientation could change the decoded size
    b"\xff\xd8\xff\xe0garbage\xff\xd9",  # no readable header: the full decode says why
], ids=["large", "exif", "no header"])
def test_other_jpegs_decode_at_once(jpeg: bytes) -> None:
    assert encoded_frame(jpeg, VGA) is None


@pytest.mark.parametrize("jpeg, reason, words", [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, Reason.FRAME_ERROR_REASON_INVALID_JPEG, "not a JPEG"),
    (_jpeg()[:2000], Reason.FRAME_ERROR_REASON_INVALID_JPEG, "truncated"),
    (_jpeg(8, 320), Reason.FRAME_ERROR_REASON_BAD_DIMENSIONS, "320x8"),
])
def test_what_the_markers_or_the_header_refuse_is_refused_at_once(jpeg: bytes, reason: int,
                                                                  words: str) -> None:
    with pytest.raises(FrameRejected) as refused:
        encoded_frame(jpeg, VGA)
    assert refused.value.reason == reason and words in refused.value.message


def test_an_undecodable_frame_keeps_its_error_and_its_batch_goes_on() -> None:
    good = [encoded_frame(_jpeg(seed=seed), VGA) for seed in (1, 2)]
    bad = encoded_frame(without_quantization_tables(_jpeg(seed=3)), VGA)
    assert bad is not None, "its header reads: only the decode finds it out"
    pixels = np.random.default_rng(4).integers(0, 256, (240, 320, 3), dtype=np.uint8)

    batch = stack_frames([good[0], bad, pixels, good[1]])

    assert batch.shape == (4, 240, 320, 3)
    assert np.array_equal(batch[0], decode(good[0].jpeg))
    assert not batch[1].any()  # zeros where the bad frame would be
    assert np.array_equal(batch[2], pixels) and np.array_equal(batch[3], decode(good[1].jpeg))
    error = frame_error(bad)
    assert error is not None and error.reason == Reason.FRAME_ERROR_REASON_INVALID_JPEG
    assert "does not decode" in error.message
    assert [frame_error(f) for f in (*good, pixels)] == [None, None, None]
    with pytest.raises(FrameRejected):
        bad.decode()


def test_put_frame_writes_decoded_and_encoded_frames_alike() -> None:
    jpeg = _jpeg(seed=5)
    out = np.empty((2, 240, 320, 3), np.uint8)
    put_frame(out[0], encoded_frame(jpeg, VGA))
    put_frame(out[1], decode(jpeg))
    assert np.array_equal(out[0], out[1])
