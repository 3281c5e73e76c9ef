"""Image statistics on synthetic images whose values are known.

The formulas are checked with :func:`image_stats` on arrays; the scale they are defined
at (the half-resolution decode), the reported size and the refusals with
:func:`jpeg_stats` / :func:`decode_jpeg` on encoded images.
"""

from __future__ import annotations

import colorsys
import struct

import cv2
import numpy as np
import pytest
from edgeloop.features import statistics
from edgeloop.features.statistics import (
    MAX_KEYPOINTS,
    STAT_NAMES,
    decode_jpeg,
    image_stats,
    jpeg_size,
    jpeg_stats,
)
from edgeloop.platform.errors import InvalidArgument

RGB = (200, 100, 50)


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (240, 320)) -> np.ndarray:
    return np.full((*size, 3), rgb[::-1], np.uint8)  # OpenCV is BGR


def checkerboard(square: int = 20) -> np.ndarray:
    """Black and white squares on a mid-grey frame (corners against the grey are keypoints)."""
    img = np.full((240, 320), 128, np.uint8)
    cells = (np.indices((160 // square, 240 // square)).sum(axis=0) % 2) * 255
    img[40:200, 40:280] = np.kron(cells, np.ones((square, square))).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def jpeg(bgr: np.ndarray, quality: int = 95, progressive: bool = False) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                         cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return buf.tobytes()


def test_solid_colour_has_its_means_and_nothing_else():
    stats = image_stats(solid(RGB))
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in RGB))
    assert (stats.mean_r, stats.mean_g, stats.mean_b) == (200, 100, 50)
    assert stats.hue == pytest.approx(h * 180, abs=0.5)  # OpenCV hue is degrees / 2
    assert stats.saturation == pytest.approx(s * 100, abs=0.3)  # 75 on the 0-100 scale
    assert stats.brightness == pytest.approx(v * 100, abs=0.3)
    assert (stats.contrast, stats.sharpness, stats.edge_density) == (0, 0, 0)
    assert (stats.keypoints, stats.entropy) == (0, 0)


def test_grey_has_zero_saturation():
    stats = image_stats(solid((128, 128, 128)))
    assert stats.saturation == 0 and stats.brightness == pytest.approx(128 / 255 * 100)


def test_half_black_half_white():
    img = np.zeros((240, 320, 3), np.uint8)
    img[:, 160:] = 255
    stats = image_stats(img)
    assert stats.entropy == pytest.approx(1.0)  # two equally likely grey levels
    assert stats.contrast == pytest.approx(127.5)  # population std of {0, 255}
    assert stats.brightness == pytest.approx(50.0)
    # one vertical edge: a line or two of pixels out of 320 columns
    assert 1 / 320 <= stats.edge_density <= 2 / 320
    assert stats.sharpness > 0
    assert stats.keypoints == 0  # a straight edge is no corner


def test_checkerboard_has_edges_and_keypoints():
    stats = image_stats(checkerboard())
    assert stats.edge_density > 0.05
    # a lens blurs a little: non-maximum suppression keeps a strict local maximum of the
    # corner score, and a perfectly sharp synthetic corner is a plateau of equal scores
    assert image_stats(cv2.GaussianBlur(checkerboard(), (0, 0), 0.8)).keypoints > 0
    assert stats.sharpness > image_stats(cv2.GaussianBlur(checkerboard(), (9, 9), 3)).sharpness


def test_sharpness_is_the_variance_of_the_laplacian():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert image_stats(img).sharpness == pytest.approx(cv2.Laplacian(grey, cv2.CV_64F).var())


def test_entropy_of_uniform_grey_noise_is_eight_bits():
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (240, 320), dtype=np.uint8)
    assert image_stats(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)).entropy == \
        pytest.approx(8.0, abs=0.01)


def test_keypoints_are_fast_corners():
    # one bright square on black, slightly blurred as by a lens: FAST (threshold 10,
    # non-maximum suppression) finds its four corners and nothing else
    def square(level: int) -> np.ndarray:
        img = np.zeros((120, 160, 3), np.uint8)
        img[40:80, 60:100] = level
        return cv2.GaussianBlur(img, (0, 0), 0.8)

    assert image_stats(square(200)).keypoints == 4
    assert image_stats(square(9)).keypoints == 0  # below the threshold of 10 grey levels


def test_keypoints_are_capped():
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert image_stats(noise).keypoints == MAX_KEYPOINTS


def test_jpeg_stats_measure_the_half_resolution_decode():
    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    data = jpeg(img)
    half = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
    assert half.shape == (120, 160, 3)
    assert jpeg_stats(data).stats == image_stats(half)  # one definition, nothing added


def test_a_pixel_fine_pattern_vanishes_at_half_resolution():
    # 1-pixel stripes: sharp at full size, a flat grey once two columns are one pixel
    stripes = np.zeros((240, 320, 3), np.uint8)
    stripes[:, ::2] = 255
    full = image_stats(stripes)
    decoded = jpeg_stats(jpeg(stripes, quality=100)).stats
    assert full.sharpness > 10_000 and decoded.sharpness < 100
    assert decoded.contrast < 10 and decoded.edge_density == 0
    assert decoded.brightness == pytest.approx(50, abs=1.5)


def test_colour_means_barely_move_at_half_resolution():
    # a smooth colour gradient (like a floor under a lamp): the thesis's saturation band
    # [40, 60] keeps its meaning, the means are those of the full image
    x = np.linspace(0, 1, 320)[None, :, None]
    y = np.linspace(0, 1, 240)[:, None, None]
    img = (np.array([60, 120, 180]) * (0.6 + 0.4 * x) * (0.7 + 0.3 * y)).astype(np.uint8)
    data = jpeg(img)
    full = image_stats(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    half = jpeg_stats(data).stats
    for name in ("mean_r", "mean_g", "mean_b", "hue", "saturation", "brightness", "contrast"):
        assert getattr(half, name) == pytest.approx(getattr(full, name), abs=0.25), name


def test_jpeg_of_a_solid_colour_decodes_to_it():
    decoded = jpeg_stats(jpeg(solid(RGB)))
    assert (decoded.width, decoded.height) == (320, 240)
    assert decoded.stats.mean_r == pytest.approx(200, abs=2)
    assert decoded.stats.saturation == pytest.approx(75, abs=1.5)
    assert decoded.stats.edge_density == 0 and decoded.stats.keypoints == 0


@pytest.mark.parametrize("height, width", [(240, 320), (241, 321), (8, 8), (9, 4096), (4096, 15)])
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_the_full_size_is_reported(height, width, progressive):
    data = jpeg(solid(RGB, (height, width)), progressive=progressive)
    image, w, h = decode_jpeg(data)
    assert (w, h) == (width, height) == jpeg_size(data)
    assert image.shape == ((height + 1) // 2, (width + 1) // 2, 3)  # libjpeg rounds up
    assert (jpeg_stats(data).width, jpeg_stats(data).height) == (width, height)


def test_the_size_is_found_behind_other_segments():
    data = jpeg(solid(RGB, (100, 200)))
    comment = b"\xff\xfe" + struct.pack(">H", 2 + 300) + bytes(300)  # COM segment
    app = b"\xff\xe1" + struct.pack(">H", 2 + 6) + b"Exif\0\0"  # an (empty) APP1
    padded = data[:2] + app + comment + b"\xff" + data[2:]  # and a fill byte
    assert jpeg_size(padded) == (200, 100)
    assert jpeg_stats(padded).stats == jpeg_stats(data).stats


def test_stat_names_are_the_proto_fields():
    from edgeloop.contracts.features.v1 import observation_pb2

    assert list(STAT_NAMES) == [f.name for f in observation_pb2.ImageStats.DESCRIPTOR.fields]


def _truncated() -> bytes:
    data = jpeg(checkerboard())
    return data[: len(data) // 2]


def _no_frame_header() -> bytes:
    data = jpeg(solid(RGB))
    sos = data.index(b"\xff\xda")
    start = data.index(b"\xff\xc0")  # drop the baseline frame header segment
    length = struct.unpack(">H", data[start + 2:start + 4])[0]
    assert start < sos
    return data[:start] + data[start + 2 + length:]


@pytest.mark.parametrize("data, problem", [
    (b"", "empty"),
    (b"GIF89a....", "not a JPEG"),
    (cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes(), "not a JPEG"),
    (b"\xff\xd8\xff\xe0" + bytes(500), "truncated"),
    (_truncated(), "truncated"),
    (b"\xff\xd8\xff\xe0" + bytes(500) + b"\xff\xd9", "cannot be decoded"),
    (b"\xff\xd8\xff\xd9", "cannot be decoded"),
    (_no_frame_header(), "cannot be decoded"),
])
def test_bad_jpegs_name_the_problem(data, problem):
    for call in (decode_jpeg, jpeg_stats):
        with pytest.raises(InvalidArgument) as err:
            call(data)
        assert err.value.field == "jpeg" and problem in err.value.message


@pytest.mark.parametrize("shape", [(4, 320, 3), (7, 8, 3), (240, 7, 3), (10, 5000, 3),
                                   (4097, 8, 3)])
def test_implausible_dimensions_are_refused(shape):
    with pytest.raises(InvalidArgument, match="pixels a side") as err:
        decode_jpeg(jpeg(np.zeros(shape, np.uint8)))
    assert err.value.field == "jpeg"
    assert f"{shape[1]}x{shape[0]}" in err.value.message  # the full size, not the decoded one


def test_size_is_refused_from_the_header_before_decoding(monkeypatch):
    # a decompression bomb is refused on its header: the decoder is never called
    data = bytearray(jpeg(solid(RGB, (16, 16))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    with pytest.raises(InvalidArgument, match="60000x60000 is outside 8..4096"):
        decode_jpeg(bytes(data))


def test_a_decode_that_disagrees_with_the_header_is_refused(monkeypatch):
    # the size we report comes from the header; if libjpeg decoded another size (a second
    # frame header, say), that size would be a lie: refuse the JPEG instead
    data = jpeg(solid(RGB, (240, 320)))
    monkeypatch.setattr(statistics, "jpeg_decode", lambda *a, **k: np.zeros((60, 80, 3), np.uint8))
    with pytest.raises(InvalidArgument, match="header 320x240, decoded 80x60") as err:
        jpeg_stats(data)
    assert err.value.field == "jpeg"
