"""The simulator as a camera and a range sensor, for the robot loop without hardware."""

from __future__ import annotations

from edgeloop.edge_client.scene.drive import Capture, DriveSimulator


class SimulatedRig:
    """Camera and range sensor sharing one simulated scene.

    ``capture_jpeg`` renders the current view and samples the simulated sensor at the
    same moment; ``read_mm`` returns that sample, like a sensor triggered with the shutter.
    The car does not move by itself: the caller advances it with :meth:`advance`.
    """

    def __init__(self, simulator: DriveSimulator) -> None:
        self.simulator = simulator
        self.last: Capture | None = None

    def capture_jpeg(self) -> bytes:
        """Render the current view (starting a run if none is in progress)."""
        try:
            self.last = self.simulator.capture()
        except RuntimeError:
            self.simulator.start_run()
            self.last = self.simulator.capture()
        return self.last.jpeg

    def read_mm(self) -> float | None:
        """The simulated sensor reading taken with the last frame."""
        return None if self.last is None else self.last.sensor_mm

    def advance(self, speed_mm_s: float) -> None:
        """Move the simulated car until the next frame."""
        self.simulator.advance(speed_mm_s)

    def close(self) -> None:
        """Nothing to release."""
