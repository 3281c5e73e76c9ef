"""The Raspberry Pi camera through picamera2.

picamera2 depends on libcamera and only installs on a Raspberry Pi (Raspberry Pi OS ships
it as ``python3-picamera2``); it is imported when this class is used, never at import
time, so the rest of the edge client runs anywhere.
"""

from __future__ import annotations

from typing import Any

import cv2
from edgeloop.edge_client.camera.base import CameraError


class PiCamera:
    """The Pi camera configured for RGB frames of ``width`` x ``height``."""

    def __init__(self, width: int = 320, height: int = 240, jpeg_quality: int = 90) -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 - only on a Raspberry Pi
        except ImportError as exc:
            raise CameraError("picamera2 is not installed: it exists only on a Raspberry Pi "
                              "(sudo apt install python3-picamera2)") from exc
        self._camera: Any = Picamera2()
        config = self._camera.create_video_configuration(
            main={"size": (width, height), "format": "RGB888"})
        self._camera.configure(config)
        self._camera.start()
        self.jpeg_quality = jpeg_quality

    def capture_jpeg(self) -> bytes:
        """Capture one frame and encode it as JPEG."""
        # picamera2's "RGB888" is BGR in memory, which is what OpenCV encodes.
        frame = self._camera.capture_array("main")
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise CameraError("could not encode the Pi camera frame")
        return buf.tobytes()

    def close(self) -> None:
        """Stop and release the camera."""
        self._camera.stop()
        self._camera.close()
