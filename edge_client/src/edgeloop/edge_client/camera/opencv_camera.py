"""Frames from OpenCV's VideoCapture: USB cameras, V4L2 devices, video files and streams."""

from __future__ import annotations

import cv2
from edgeloop.edge_client.camera.base import CameraError


class OpenCVCamera:
    """A VideoCapture source resized to ``width`` x ``height`` and JPEG-encoded."""

    def __init__(self, source: int | str = 0, width: int = 320, height: int = 240,
                 jpeg_quality: int = 90) -> None:
        self._capture = cv2.VideoCapture(source)
        if not self._capture.isOpened():
            raise CameraError(f"OpenCV cannot open camera source {source!r}")
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.source = source
        self.size = (width, height)
        self.jpeg_quality = jpeg_quality

    def capture_jpeg(self) -> bytes:
        """Grab, resize (when the device ignores the requested size) and encode one frame."""
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise CameraError(f"camera source {self.source!r} delivered no frame")
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise CameraError("OpenCV could not encode the frame")
        return buf.tobytes()

    def close(self) -> None:
        """Release the capture device."""
        self._capture.release()
