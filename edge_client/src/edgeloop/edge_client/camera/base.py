"""What the robot loop needs from a camera and a range sensor."""

from __future__ import annotations

from typing import Protocol


class CameraError(Exception):
    """The camera cannot be opened or did not deliver a frame."""


class Camera(Protocol):
    """A source of JPEG frames."""

    def capture_jpeg(self) -> bytes:
        """Capture one frame, encoded as JPEG."""

    def close(self) -> None:
        """Release the device."""


class RangeSensor(Protocol):
    """A source of reference distances."""

    def read_mm(self) -> float | None:
        """The current distance in mm, or None when there is no valid reading."""

    def close(self) -> None:
        """Release the device."""
