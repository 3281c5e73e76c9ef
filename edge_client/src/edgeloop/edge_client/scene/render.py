"""The renderer: a vectorised ray caster of a textured floor and a white wall.

Everything that does not depend on the wall (per-pixel rays, where each ray meets the
floor, vignetting, the car's own shadow, a pool of sensor noise) is computed once per
camera and seed; a frame then costs a handful of numpy operations over 320x240 pixels
and one JPEG encode. Output is deterministic for a given seed and call sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from edgeloop.edge_client.scene.camera import CameraModel
from edgeloop.edge_client.scene.floor import (
    FLOOR_ROWS,
    TEXEL_MM,
    TEXTURE_TEXELS,
    WALL_BAND_MM_PER_ROW,
    WALL_BAND_ROWS,
    FloorSpec,
    floor_texture,
)
from edgeloop.platform.jpeg import decode as jpeg_decode

_FAR_MM = 1.0e6
_NOISE_POOL = 6


@dataclass(frozen=True)
class Look:
    """Lighting and sensor: overall gain, RGB colour cast, vignetting, noise (std, 0-255)."""

    gain: float = 1.0
    cast: tuple[float, float, float] = (1.0, 0.97, 0.9)
    vignette: float = 0.35
    noise: float = 3.0
    wall_rgb: tuple[int, int, int] = (236, 232, 222)
    jpeg_quality: int = 90


@dataclass(frozen=True)
class SceneState:
    """Where the wall is: range along the sensor axis, wall yaw, and how far the car moved.

    ``sensor_x_mm`` is where the range sensor sits on the bumper, to the right of the
    camera's centre line. Head-on it changes nothing; with the wall at an angle the
    sensor's axis meets the wall nearer or farther than the camera's centre line does
    (by ``sensor_x_mm * tan(yaw)``): the concept drift of an angled approach.
    """

    distance_mm: float
    yaw_deg: float = 0.0
    travelled_mm: float = 0.0
    sensor_x_mm: float = 0.0


class SceneRenderer:
    """Renders frames of one camera; create one per (camera, seed) and reuse it."""

    def __init__(self, camera: CameraModel | None = None, seed: int = 0) -> None:
        self.camera = camera or CameraModel()
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        rays = self.camera.rays()
        self._rx, self._ry, self._rz = (rays[..., i] for i in range(3))
        self._origin = self.camera.origin.astype(np.float32)
        self._prepare_floor()
        self._prepare_shading()
        pool = self._rng.standard_normal((_NOISE_POOL, self.camera.height, self.camera.width, 3))
        self._noise = pool.astype(np.float32)

    def _prepare_floor(self) -> None:
        oy = self._origin[1]
        down = self._ry < -1e-6
        t = np.where(down, oy / np.maximum(-self._ry, 1e-6), _FAR_MM).astype(np.float32)
        self._t_floor = t
        self._floor_x = self._origin[0] + t * self._rx
        self._floor_z = self._origin[2] + t * self._rz
        # Texture coordinates for cv2.remap, kept inside one tile (remap's fixed-point
        # maps cannot hold large coordinates); BORDER_WRAP joins the tile's edges.
        self._tex_u = np.mod(self._floor_x / TEXEL_MM, TEXTURE_TEXELS).astype(np.float32)
        self._tex_v = np.mod(self._floor_z / TEXEL_MM, TEXTURE_TEXELS).astype(np.float32)

    def _prepare_shading(self) -> None:
        cam = self.camera
        v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float32)
        r2 = ((u - cam.width / 2) ** 2 + (v - cam.height / 2) ** 2) / ((cam.width / 2) ** 2)
        self._vignette_r2 = r2
        self._vignettes: dict[float, np.ndarray] = {}
        # The car body shades the floor right behind the bumper.
        shadow = 1.0 - 0.35 * np.exp(-np.maximum(self._floor_z, 0) / 45.0)
        self._car_shadow = shadow.astype(np.float32)

    def render(self, state: SceneState, floor: FloorSpec, look: Look) -> np.ndarray:
        """One frame as an RGB uint8 array (H, W, 3)."""
        yaw = np.radians(state.yaw_deg)
        nx, nz = np.float32(np.sin(yaw)), np.float32(np.cos(yaw))
        # The wall plane n.p = c passes through the point where the sensor's axis (parallel
        # to z, from x = sensor_x_mm on the bumper) meets it: (sensor_x_mm, 0, distance_mm).
        # So the sensor reads distance_mm whatever the yaw, while the camera's centre line
        # meets the wall at distance_mm + sensor_x_mm * tan(yaw).
        plane = np.float32(nx * state.sensor_x_mm + nz * state.distance_mm)
        denom = nx * self._rx + nz * self._rz
        t_wall = (plane - (nx * self._origin[0] + nz * self._origin[2])) / np.maximum(denom, 1e-6)
        wall = (denom > 1e-6) & (t_wall < self._t_floor)
        wall_height = np.maximum(self._origin[1] + t_wall * self._ry, 0)
        colour = self._colour(state, floor, look, wall, wall_height)
        # Ambient occlusion: the wall darkens towards the floor.
        wall_shade = 1.0 - 0.22 * np.exp(-wall_height / 25.0)
        shade = np.where(wall, wall_shade, self._floor_shade(plane, nx, nz))
        shade *= self._vignette(look.vignette) * np.float32(look.gain)
        gains = [shade * np.float32(c) for c in reversed(look.cast)]
        image = cv2.multiply(colour, cv2.merge(gains[::-1]), dtype=cv2.CV_32F)
        if look.noise > 0:
            noise = self._noise[self._rng.integers(_NOISE_POOL)]
            image = cv2.scaleAdd(noise, float(look.noise), image)
        return np.clip(image, 0, 255, out=image).astype(np.uint8)

    def _colour(self, state: SceneState, floor: FloorSpec, look: Look,
                wall: np.ndarray, wall_height: np.ndarray) -> np.ndarray:
        # One remap paints floor and wall: wall pixels look up the texture's wall band.
        texture = floor_texture(floor, self.seed, look.wall_rgb)
        # tex_v and the shift are both inside one tile, so their sum stays inside the
        # doubled tile: no modulo per pixel.
        shift = np.float32((state.travelled_mm / TEXEL_MM) % TEXTURE_TEXELS)
        band = wall_height * np.float32(1 / WALL_BAND_MM_PER_ROW) + np.float32(FLOOR_ROWS)
        band = np.minimum(band, np.float32(FLOOR_ROWS + WALL_BAND_ROWS - 1))
        v = np.where(wall, band, self._tex_v + shift)
        return cv2.remap(texture, self._tex_u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)

    def _vignette(self, strength: float) -> np.ndarray:
        cached = self._vignettes.get(strength)
        if cached is None:
            cached = (1.0 - strength * self._vignette_r2).astype(np.float32)
            self._vignettes[strength] = cached
        return cached

    def _floor_shade(self, plane: np.float32, nx: np.float32, nz: np.float32) -> np.ndarray:
        # Soft contact shadow where the floor meets the wall (light comes from above).
        gap = plane - (nx * self._floor_x + nz * self._floor_z)
        contact = 1.0 - 0.3 * np.exp(-np.maximum(gap, 0) / 20.0)
        return contact * self._car_shadow

    def render_jpeg(self, state: SceneState, floor: FloorSpec, look: Look) -> bytes:
        """One frame encoded as JPEG."""
        return encode_jpeg(self.render(state, floor, look), look.jpeg_quality)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an RGB uint8 image as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode the frame as JPEG")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG bytes into an RGB uint8 image; ``ValueError`` if they are not an image."""
    image = jpeg_decode(data, "RGB")
    if image is None:
        raise ValueError("bytes do not decode as an image")
    return image
