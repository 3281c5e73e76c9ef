"""Floor presets and their procedural textures.

A floor is a base colour plus a seamless texture: low-frequency blotches (uneven
material, stains) and fine grain. Textures tile every ``TEXTURE_MM`` millimetres so the
floor can scroll under the reversing car forever.

The presets are calibrated against the drift monitor's thesis rule (5-minute mean HSV
saturation on a 0-100 scale inside [40, 60] for the training world): ``beige`` renders
to a mean image saturation of about 50, ``green`` and ``red`` far above 60. The measured
values are in the member README.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

TEXEL_MM = 2.0
TEXTURE_TEXELS = 1024
TEXTURE_MM = TEXEL_MM * TEXTURE_TEXELS
FLOOR_ROWS = 2 * TEXTURE_TEXELS + 1
"""The floor tile is stored twice (plus one wrap row) so a scrolled lookup needs no modulo."""
WALL_BAND_ROWS = 64
WALL_BAND_MM_PER_ROW = 5.0
"""The wall band below the floor tile: row k is the wall's colour at height k*5 mm."""
BLEED = 0.45
BLEED_HEIGHT_MM = 60.0
"""Light bounced off the floor tints the foot of the wall with the floor's colour."""


@dataclass(frozen=True)
class FloorSpec:
    """A floor: base colour (RGB 0-255), blotch and grain strength (fractions of the colour)."""

    rgb: tuple[int, int, int]
    blotch: float = 0.08
    grain: float = 0.05
    name: str = "custom"

    def __post_init__(self) -> None:
        if len(self.rgb) != 3 or any(not 0 <= c <= 255 for c in self.rgb):
            raise ValueError(f"floor rgb must be three values in 0-255, got {self.rgb!r}")
        if not (0 <= self.blotch <= 1 and 0 <= self.grain <= 1):
            raise ValueError("floor blotch and grain must be in [0, 1]")


PRESETS: dict[str, FloorSpec] = {
    # A tan/kraft board floor under warm light: the thesis's training world.
    "beige": FloorSpec((207, 155, 86), blotch=0.07, grain=0.05, name="beige"),
    # A green play mat: different hue, clearly more saturated.
    "green": FloorSpec((14, 134, 22), blotch=0.08, grain=0.05, name="green"),
    # A red carpet: different hue, the most saturated.
    "red": FloorSpec((198, 24, 18), blotch=0.08, grain=0.06, name="red"),
}


def floor_preset(name: str) -> FloorSpec:
    """The named preset; a ``ValueError`` lists the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown floor preset {name!r}; known: {', '.join(PRESETS)}") from None


def parse_rgb(text: str) -> tuple[int, int, int]:
    """Parse ``"r,g,b"`` or ``"#rrggbb"`` into an RGB tuple."""
    text = text.strip()
    try:
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise ValueError(f"floor rgb {text!r} is not 'r,g,b' or '#rrggbb'") from None
    if len(parts) != 3:
        raise ValueError(f"floor rgb {text!r} needs three components")
    return parts[0], parts[1], parts[2]


@functools.lru_cache(maxsize=16)
def floor_texture(spec: FloorSpec, seed: int, wall_rgb: tuple[int, int, int]) -> np.ndarray:
    """The seamless texture of ``spec`` with a band of wall colour below it, RGB uint8.

    Shape (FLOOR_ROWS + WALL_BAND_ROWS, TEXTURE_TEXELS, 3): the tile twice plus its first
    row again, then the wall's colour by height, so one ``cv2.remap`` paints floor and wall.
    """
    rng = np.random.default_rng(seed)
    n = TEXTURE_TEXELS
    blotch = _seamless_blur(rng.standard_normal((n, n)), 24)
    blotch /= blotch.std() + 1e-6
    grain = _seamless_blur(rng.standard_normal((n, n)), 0.8)
    grain /= grain.std() + 1e-6
    shade = 1.0 + spec.blotch * blotch + spec.grain * grain
    # A slight per-channel jitter keeps the texture from being a pure brightness pattern.
    tint = 1.0 + 0.02 * _seamless_blur(rng.standard_normal((n, n, 3)), 6)
    tex = np.asarray(spec.rgb, np.float32) * shade[..., None] * tint
    band = np.broadcast_to(wall_band(spec, wall_rgb)[:, None, :], (WALL_BAND_ROWS, n, 3))
    return np.clip(np.concatenate([tex, tex, tex[:1], band]), 0, 255).astype(np.uint8)


def wall_band(spec: FloorSpec, wall_rgb: tuple[int, int, int]) -> np.ndarray:
    """The wall's RGB colour by height (WALL_BAND_ROWS, 3), tinted by the floor near it."""
    wall = np.asarray(wall_rgb, np.float32)
    floor = np.asarray(spec.rgb, np.float32)
    # The bounce light keeps the wall's brightness but takes the floor's chromaticity.
    tint = floor / max(float(floor.max()), 1.0) * float(wall.max())
    heights = np.arange(WALL_BAND_ROWS, dtype=np.float32) * WALL_BAND_MM_PER_ROW
    mix = (BLEED * np.exp(-heights / BLEED_HEIGHT_MM))[:, None]
    return wall * (1 - mix) + tint * mix


def _seamless_blur(noise: np.ndarray, sigma: float) -> np.ndarray:
    # OpenCV's Gaussian blur has no wrap-around border, so pad periodically and crop:
    # the result tiles without a seam.
    pad = int(3 * sigma) + 1
    width = ((pad, pad), (pad, pad)) + ((0, 0),) * (noise.ndim - 2)
    padded = np.pad(noise.astype(np.float32), width, mode="wrap")
    blurred = cv2.GaussianBlur(padded, (0, 0), sigma)
    return blurred[pad:-pad, pad:-pad]
