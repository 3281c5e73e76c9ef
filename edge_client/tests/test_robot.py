"""The hardware robot loop with the OpenCV camera on a real video file.

The range sensor is a scripted stand-in for the VL53L0X (hardware fake); the camera is
OpenCV's VideoCapture reading a video written by OpenCV, and the gateway is the in-test one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from edgeloop.edge_client.camera.base import CameraError
from edgeloop.edge_client.camera.opencv_camera import OpenCVCamera
from edgeloop.edge_client.camera.picamera import PiCamera
from edgeloop.edge_client.camera.simulated import SimulatedRig
from edgeloop.edge_client.control.parking import Mode, ParkingController
from edgeloop.edge_client.robot import run_robot
from edgeloop.edge_client.scene.drive import DriveSimulator
from edgeloop.edge_client.scene.render import decode_jpeg
from edgeloop.edge_client.scene.scenarios import resolve_plan
from edgeloop.edge_client.stream.buffer import OfflineBuffer
from edgeloop.edge_client.stream.client import StreamClient


class ScriptedRange:
    """Readings a VL53L0X would give on a reversing car (hardware fake)."""

    def __init__(self, readings: list[float | None]) -> None:
        self.readings = list(readings)

    def read_mm(self) -> float | None:
        return self.readings.pop(0) if self.readings else 0.0

    def close(self) -> None:
        pass


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "rear.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    rig = SimulatedRig(DriveSimulator(resolve_plan("beige"), seed=1))
    for _ in range(20):
        frame = decode_jpeg(rig.capture_jpeg())
        writer.write(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), (640, 480)))
        rig.advance(40)
    writer.release()
    return path


def test_opencv_camera_resizes_and_encodes(video: Path) -> None:
    camera = OpenCVCamera(str(video))
    image = decode_jpeg(camera.capture_jpeg())
    camera.close()
    assert image.shape == (240, 320, 3)
    with pytest.raises(CameraError, match="cannot open"):
        OpenCVCamera(str(video.with_name("missing.avi")))


def test_picamera_says_it_needs_a_pi() -> None:
    with pytest.raises(CameraError, match="Raspberry Pi"):
        PiCamera()


async def test_robot_run_streams_frames_and_stops_on_the_sensor(gateway, video: Path,
                                                                 tmp_path: Path) -> None:
    client = StreamClient(gateway.address, gateway.device, gateway.token,
                          OfflineBuffer(tmp_path / "b.db"))
    await client.start()
    readings = [200.0, 150.0, None, 90.0, 50.0, 29.0, 10.0]
    decision, delivery = await run_robot(OpenCVCamera(str(video)), ScriptedRange(readings), client,
                                         ParkingController(mode=Mode.MODEL), fps=20)
    await client.close()
    assert decision is not None and decision.stop and "safety stop" in decision.reason
    assert delivery.frames == 6 and delivery.labelled == 5 and delivery.predictions == 6
    assert [r.sensor_mm for r in gateway.state.received] == readings[:6]
