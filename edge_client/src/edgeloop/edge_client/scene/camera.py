"""The simulated rear camera: intrinsics, lens distortion and how it is mounted on the car.

World frame (millimetres, attached to the car): ``x`` to the right in the image, ``y`` up
from the floor, ``z`` backwards along the driving direction, i.e. towards the wall. The
range sensor sits on the rear bumper at ``z = 0``; the camera lens sits ``setback_mm``
ahead of it (inside the car body), ``height_mm`` above the floor, pitched down.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics with radial distortion, plus the camera's mount on the car.

    The defaults model a small wide-angle board camera (about 90 degrees horizontal for
    the pinhole part, wider at the corners through barrel distortion) mounted low on the
    rear of the car so that the floor-wall edge stays in view from 0 to 350 mm.
    """

    width: int = 320
    height: int = 240
    hfov_deg: float = 90.0
    k1: float = -0.25
    k2: float = 0.06
    height_mm: float = 90.0
    setback_mm: float = 60.0
    pitch_deg: float = 45.0

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (square pixels) from the horizontal field of view."""
        return (self.width / 2) / float(np.tan(np.radians(self.hfov_deg) / 2))

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 intrinsic matrix K."""
        f = self.focal_px
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1]], np.float64)

    @property
    def distortion(self) -> np.ndarray:
        """OpenCV distortion coefficients (k1, k2, p1, p2)."""
        return np.array([self.k1, self.k2, 0.0, 0.0], np.float64)

    @property
    def origin(self) -> np.ndarray:
        """The lens centre in the world frame."""
        return np.array([0.0, self.height_mm, -self.setback_mm])

    def basis(self) -> np.ndarray:
        """Rows: the camera's right, down and forward axes in the world frame."""
        p = np.radians(self.pitch_deg)
        forward = np.array([0.0, -np.sin(p), np.cos(p)])
        down = np.array([0.0, -np.cos(p), -np.sin(p)])
        return np.stack([np.array([1.0, 0.0, 0.0]), down, forward])

    def rays(self) -> np.ndarray:
        """Unit world-frame ray directions of every pixel centre, shape (H, W, 3), float32."""
        return _rays(self)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates (u, v) of world points, shape (N, 3) -> (N, 2), with distortion."""
        cam = (np.asarray(points, np.float64) - self.origin) @ self.basis().T
        uv, _ = cv2.projectPoints(cam.reshape(-1, 1, 3), np.zeros(3), np.zeros(3),
                                  self.matrix, self.distortion)
        return uv.reshape(-1, 2)


@functools.lru_cache(maxsize=8)
def _rays(camera: CameraModel) -> np.ndarray:
    # Undistorting every pixel once gives the true viewing ray per pixel, so lens
    # distortion costs nothing per frame.
    v, u = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    pixels = np.stack([u.ravel() + 0.5, v.ravel() + 0.5], axis=1).reshape(-1, 1, 2)
    norm = cv2.undistortPoints(pixels, camera.matrix, camera.distortion).reshape(-1, 2)
    cam = np.concatenate([norm, np.ones((norm.shape[0], 1))], axis=1)
    world = cam @ camera.basis()
    world /= np.linalg.norm(world, axis=1, keepdims=True)
    return world.reshape(camera.height, camera.width, 3).astype(np.float32)
