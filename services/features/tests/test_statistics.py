"""Image statistics on synthetic images whose values are known."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
import pytest
from edgeloop.features.statistics import STAT_NAMES, decode_jpeg, image_stats, jpeg_stats
from edgeloop.platform.errors import InvalidArgument

RGB = (200, 100, 50)


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (240, 320)) -> np.ndarray:
    return np.full((*size, 3), rgb[::-1], np.uint8)  # OpenCV is BGR


def checkerboard(square: int = 20) -> np.ndarray:
    """Black and white squares on a mid-grey frame (ORB needs corners away from the border)."""
    img = np.full((240, 320), 128, np.uint8)
    cells = (np.indices((160 // square, 240 // square)).sum(axis=0) % 2) * 255
    img[40:200, 40:280] = np.kron(cells, np.ones((square, square))).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


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


def test_checkerboard_has_edges_and_keypoints():
    stats = image_stats(checkerboard())
    assert stats.edge_density > 0.05
    assert stats.keypoints > 0
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


def test_keypoints_are_capped_by_orb():
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    # ORB spreads its 500 features over the pyramid levels: near, never above, the cap
    assert 400 < image_stats(noise).keypoints <= 500


def test_jpeg_of_a_solid_colour_decodes_to_it():
    ok, buf = cv2.imencode(".jpg", solid(RGB), [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = jpeg_stats(buf.tobytes())
    assert (decoded.width, decoded.height) == (320, 240)
    assert decoded.stats.mean_r == pytest.approx(200, abs=2)
    assert decoded.stats.saturation == pytest.approx(75, abs=1.5)
    assert decoded.stats.edge_density == 0 and decoded.stats.keypoints == 0


def test_stat_names_are_the_proto_fields():
    from edgeloop.contracts.features.v1 import observation_pb2

    assert list(STAT_NAMES) == [f.name for f in observation_pb2.ImageStats.DESCRIPTOR.fields]


@pytest.mark.parametrize("data, problem", [
    (b"", "empty"),
    (b"GIF89a....", "not a JPEG"),
    (b"\xff\xd8\xff\xe0" + bytes(500), "truncated"),
    (b"\xff\xd8\xff\xe0" + bytes(500) + b"\xff\xd9", "cannot be decoded"),
])
def test_bad_jpegs_name_the_problem(data, problem):
    with pytest.raises(InvalidArgument) as err:
        decode_jpeg(data)
    assert err.value.field == "jpeg" and problem in err.value.message


@pytest.mark.parametrize("shape", [(4, 320, 3), (10, 5000, 3)])
def test_implausible_dimensions_are_refused(shape):
    ok, buf = cv2.imencode(".jpg", np.zeros(shape, np.uint8))
    with pytest.raises(InvalidArgument, match="pixels a side"):
        decode_jpeg(buf.tobytes())
