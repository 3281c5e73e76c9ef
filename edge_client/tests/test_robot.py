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


async def test_robot_without_a_gateway_parks_on_its_own_model_and_buffers(
        video: Path, tmp_path: Path) -> None:
    import hashlib
    import shutil

    from edgeloop.edge_client.inference.device_model import DeviceModel
    from edgeloop.edge_client.inference.onboard import Inference, Onboard
    from edgeloop.edge_client.inference.store import ModelIdentity, ModelStore
    from edgeloop.testing import free_port

    tiny = Path(__file__).resolve().parent / "data" / "tiny_v1.tflite"
    store = ModelStore(tmp_path / "models")
    identity = ModelIdentity("distance", "1", tiny.stat().st_size,
                             hashlib.sha256(tiny.read_bytes()).hexdigest())
    store.part_path(identity).parent.mkdir(parents=True)
    shutil.copy(tiny, store.part_path(identity))
    store.commit(identity)
    store.set_current(identity)
    model = DeviceModel(store, threads=1)
    assert model.load_stored()
    onboard = Onboard(Inference.DEVICE, model)
    client = StreamClient(f"127.0.0.1:{free_port()}", "car-9", "t",  # nothing listens there
                          OfflineBuffer(tmp_path / "b.db"))
    onboard.attach(client)
    await client.start()
    controller = ParkingController(mode=Mode.MODEL)
    decide, sources = controller.decide, []

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        decision = decide(*args, **kwargs)
        sources.append((decision.source, decision.distance_mm))
        return decision

    controller.decide = recording  # type: ignore[method-assign]
    # tiny v1 answers 1000-1100 mm: far from the wall, so the model says "drive on"
    decision, delivery = await run_robot(
        OpenCVCamera(str(video)), ScriptedRange([400.0, 380.0, 360.0, 25.0]), client,
        controller, fps=20, onboard=onboard)
    try:
        await client.close(drain_timeout_s=0.5)
    finally:
        await onboard.stop()
    assert decision is not None and decision.stop and "safety stop" in decision.reason
    assert delivery.frames == 4 and delivery.predictions == 0
    assert [src for src, _ in sources[:3]] == ["model"] * 3  # steered by the device model
    assert all(1000 <= mm <= 1100 for _, mm in sources[:3])
    buffered = [client.buffer.get(client.session_id, s) for s in client.buffer.seqs(
        client.session_id)]
    assert len(buffered) == 4
    assert all(f.late and f.device_prediction.model_version == "1"
               and 1000 <= f.device_prediction.distance_mm <= 1100 for f in buffered)
