"""JPEG decoding through TurboJPEG gives OpenCV's pixels, bit for bit, in every case."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from edgeloop.platform import jpeg
from edgeloop.platform.jpeg import decode

REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
           8: cv2.IMREAD_REDUCED_COLOR_8}


def _scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured colour image (gradients, edges, noise): every DCT coefficient matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)),
                      ((x // 7 + y // 5) % 2) * 200], axis=-1).astype(np.int16)
    image += rng.integers(-20, 21, image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def _encode(image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90, *params])
    assert ok
    return data.tobytes()


def _opencv(data: bytes, order: str, reduction: int, apply_orientation: bool = True):
    flags = REDUCED[reduction] | (0 if apply_orientation else cv2.IMREAD_IGNORE_ORIENTATION)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return bgr if order == "BGR" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


ENCODINGS = {
    "420": (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
    "422": (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422),
    "444": (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
    "411": (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411),
    "progressive": (cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    "restart markers": (cv2.IMWRITE_JPEG_RST_INTERVAL, 4),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("height, width", [(240, 320), (217, 333), (9, 8)])
@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_the_pixels_are_opencvs(encoding: str, height: int, width: int, reduction: int,
                                order: str) -> None:
    data = _encode(_scene(height, width), *ENCODINGS[encoding])
    expected = _opencv(data, order, reduction)
    got = decode(data, order, reduction)
    assert got is not None and got.shape == expected.shape and got.dtype == np.uint8
    assert np.array_equal(got, expected)


def test_grey_jpegs_decode_to_three_equal_channels_as_opencv_does() -> None:
    data = _encode(cv2.cvtColor(_scene(120, 160), cv2.COLOR_BGR2GRAY))
    assert np.array_equal(decode(data, "RGB"), _opencv(data, "RGB", 1))
    assert np.array_equal(decode(data, "BGR", 2), _opencv(data, "BGR", 2))


def test_these_frames_take_the_turbojpeg_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above is worth something only if TurboJPEG decoded those frames."""
    monkeypatch.setattr(jpeg, "_opencv", lambda *args: pytest.fail("fell back to OpenCV"))
    assert decode(_encode(_scene(240, 320)), "RGB", 2) is not None


def _with_exif_orientation(data: bytes, orientation: int) -> bytes:
    # APP1 "Exif" with a little-endian TIFF header and one IFD entry: Orientation (0x0112)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHII", 0x0112, 3, 1, orientation) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]


def test_an_exif_orientation_turns_the_image_as_opencv_does() -> None:
    data = _with_exif_orientation(_encode(_scene(60, 100)), orientation=6)  # 90° clockwise
    turned = decode(data, "RGB")
    assert turned.shape == (100, 60, 3)
    assert np.array_equal(turned, _opencv(data, "RGB", 1))
    as_stored = decode(data, "RGB", apply_orientation=False)
    assert as_stored.shape == (60, 100, 3)
    assert np.array_equal(as_stored, _opencv(data, "RGB", 1, apply_orientation=False))


def test_data_turbojpeg_warns_about_is_decoded_as_opencv_decodes_it() -> None:
    clean = _encode(_scene(64, 64))
    scan = clean.index(b"\xff\xda")  # start of scan: stray bytes before it are a warning
    corrupt = clean[:scan] + b"\x00\x00\x00" + clean[scan:]
    expected = _opencv(corrupt, "RGB", 1)
    assert expected is not None, "OpenCV decodes it despite the stray bytes"
    assert np.array_equal(decode(corrupt, "RGB"), expected)


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xe0garbage\xff\xd9"])
def test_what_does_not_decode_is_none(data: bytes) -> None:
    assert decode(data) is None


def test_only_libjpegs_scales_are_offered() -> None:
    with pytest.raises(ValueError, match="reduction"):
        decode(_encode(_scene(16, 16)), reduction=3)
