"""The VL53L0X as the robot loop's range sensor."""

from __future__ import annotations

from edgeloop.edge_client.sensors.vl53l0x import VL53L0X


class VL53L0XRangeSensor:
    """Continuous timed ranging on a VL53L0X; each read waits for the next sample."""

    def __init__(self, sensor: VL53L0X, period_ms: int = 50,
                 timing_budget_us: int = 33_000) -> None:
        self.sensor = sensor
        sensor.init(timing_budget_us=timing_budget_us)
        sensor.start_continuous(period_ms)

    @classmethod
    def open(cls, bus_number: int = 1, address: int = 0x29) -> VL53L0XRangeSensor:
        """The sensor on a Raspberry Pi I2C bus."""
        return cls(VL53L0X.open(bus_number, address))

    def read_mm(self) -> float | None:
        """The latest distance in mm, None when out of range."""
        mm = self.sensor.read_continuous_mm()
        return None if mm is None else float(mm)

    def close(self) -> None:
        """Stop ranging."""
        self.sensor.stop_continuous()
