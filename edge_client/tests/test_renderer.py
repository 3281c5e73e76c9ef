"""The scene renderer: determinism, wall geometry, floor presets."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from edgeloop.edge_client.scene.camera import CameraModel
from edgeloop.edge_client.scene.floor import PRESETS, FloorSpec, parse_rgb
from edgeloop.edge_client.scene.render import Look, SceneRenderer, SceneState, decode_jpeg
from edgeloop.edge_client.simulate import render_dataset

CLEAN = Look(noise=0.0, vignette=0.0)


def test_same_seed_same_frames_and_another_seed_other_frames() -> None:
    first = list(render_dataset("green-angle", 12, seed=7))
    again = list(render_dataset("green-angle", 12, seed=7))
    other = list(render_dataset("green-angle", 12, seed=8))
    assert [f.jpeg for f in first] == [f.jpeg for f in again]
    assert [f.sensor_mm for f in first] == [f.sensor_mm for f in again]
    assert [f.jpeg for f in first] != [f.jpeg for f in other]


def _wall_edge_row(image: np.ndarray) -> int:
    # The floor-wall edge in the centre column: the strongest brightness drop going down.
    column = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, image.shape[1] // 2].astype(float)
    return int(np.argmin(np.diff(column)))


def test_wall_edge_moves_monotonically_with_distance_across_the_image() -> None:
    renderer = SceneRenderer(seed=0)
    distances = list(range(0, 360, 10))
    rows = [_wall_edge_row(renderer.render(SceneState(d), PRESETS["beige"], CLEAN))
            for d in distances]
    assert all(a > b for a, b in zip(rows, rows[1:], strict=False)), rows
    assert rows[0] - rows[-1] > 100, "0-350 mm must span a good part of the image"
    expected = CameraModel().project(np.array([[0.0, 0.0, 200.0]]))[0, 1]
    assert abs(rows[distances.index(200)] - expected) <= 2


def test_wall_yaw_tilts_the_edge() -> None:
    renderer = SceneRenderer(seed=0)
    image = renderer.render(SceneState(150, yaw_deg=25), PRESETS["beige"], CLEAN)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(float)
    left = int(np.argmin(np.diff(gray[:, 80])))
    right = int(np.argmin(np.diff(gray[:, 240])))
    assert abs(left - right) > 15


def _hsv_means(name: str) -> tuple[float, float]:
    sats, hues = [], []
    for frame in render_dataset(name, 60, seed=3):
        hsv = cv2.cvtColor(decode_jpeg(frame.jpeg), cv2.COLOR_RGB2HSV)
        sats.append(hsv[..., 1].mean() / 255 * 100)
        floor = hsv[-60:, :, 0].astype(float) * 2 * np.pi / 180  # bottom rows are floor
        hues.append(np.degrees(np.angle(np.exp(1j * floor).mean())) % 360)
    mean_hue = np.degrees(np.angle(np.exp(1j * np.radians(hues)).mean())) % 360
    return float(np.mean(sats)), float(mean_hue)


def test_presets_sit_where_the_drift_rule_expects_them() -> None:
    beige_sat, beige_hue = _hsv_means("beige")
    green_sat, green_hue = _hsv_means("green")
    red_sat, red_hue = _hsv_means("red")
    assert 45 <= beige_sat <= 55, "the training world sits inside the [40, 60] band"
    assert green_sat > 63 and red_sat > 63, "the drifted worlds are clearly outside"
    assert 20 <= beige_hue <= 50
    assert 100 <= green_hue <= 140
    assert red_hue <= 15 or red_hue >= 345


def test_any_rgb_floor_and_bad_colours() -> None:
    assert parse_rgb("10, 20,30") == (10, 20, 30)
    assert parse_rgb("#ff8000") == (255, 128, 0)
    with pytest.raises(ValueError, match="three"):
        parse_rgb("1,2")
    with pytest.raises(ValueError, match="0-255"):
        FloorSpec((300, 0, 0))
    blue = FloorSpec((20, 40, 200))
    image = SceneRenderer(seed=0).render(SceneState(200), blue, CLEAN)
    b, g, r = image[-40:].reshape(-1, 3).mean(axis=0)[::-1]
    assert b > 2 * r and b > 2 * g


def test_angled_wall_shows_the_camera_another_distance_than_the_sensor_reads() -> None:
    # Concept drift: the sensor (80 mm right of the camera) reads 150 mm along its axis;
    # with the wall at +25 deg the camera's centre line meets it 80*tan(25) = 37 mm
    # farther, so the image looks like a head-on wall at ~187 mm, not at 150 mm.
    renderer = SceneRenderer(seed=0)
    angled = renderer.render(SceneState(150, yaw_deg=25, sensor_x_mm=80), PRESETS["beige"], CLEAN)
    seen = 150 + 80 * np.tan(np.radians(25))
    looks_like = renderer.render(SceneState(seen), PRESETS["beige"], CLEAN)
    head_on = renderer.render(SceneState(150), PRESETS["beige"], CLEAN)
    assert abs(_wall_edge_row(angled) - _wall_edge_row(looks_like)) <= 1
    assert _wall_edge_row(head_on) - _wall_edge_row(angled) >= 8
    # Head-on, the sensor's place does not matter.
    offset = renderer.render(SceneState(150, sensor_x_mm=80), PRESETS["beige"], CLEAN)
    assert _wall_edge_row(offset) == _wall_edge_row(head_on)
