"""The VL53L0X driver against a register-level fake device.

The fake is a hardware stand-in (there is no sensor on this machine): it implements
smbus2's SMBus methods and emulates the chip's register pages (0xFF), the stop variable
at 0x91, the SPAD info NVM handshake through 0x83/0x94/0x92, the reference SPAD map,
SYSRANGE_START and the interrupt status/clear registers with measurements that take a
few polls, and VHV/phase calibration runs. It knows nothing of the driver's functions.
"""

from __future__ import annotations

import pytest
from edgeloop.edge_client.sensors.vl53l0x import (
    VL53L0X,
    VL53L0XError,
    decode_timeout,
    encode_timeout,
)

GLOBAL = {0x80, 0xFF}


class FakeVL53L0X:
    """Register-level VL53L0X behind the smbus2 SMBus interface."""

    def __init__(self, address: int = 0x29, model: int = 0xEE, stop_variable: int = 0x3C,
                 spad_info: int = 0x85, spad_map: tuple[int, ...] = (0xFF,) * 6,
                 polls: int = 3, nvm_works: bool = True) -> None:
        self.address = address
        self.model = model
        self.stop_variable = stop_variable
        self.spad_info = spad_info
        self.nvm_map = list(spad_map)
        self.polls = polls
        self.nvm_works = nvm_works
        self.regs: dict[tuple[int, int], int] = {(0, 0x89): 0x00, (0, 0x60): 0x00, (0, 0x84): 0x11,
                                                 (0, 0xF8): 0x00, (0, 0xF9): 0x46}
        self.distance_mm: int | None = 250
        self.writes: list[tuple[int, int, int]] = []
        self.calibrations: list[tuple[str, int]] = []
        self.ranging: list[tuple[str, int | None]] = []
        self.mode = "idle"
        self._nvm_countdown: int | None = None
        self._start_countdown = 0
        self._result_countdown: int | None = None
        self._interrupt = 0
        self._armed_stop: int | None = None

    # -- smbus2 interface ------------------------------------------------------------

    def _check(self, addr: int) -> None:
        if addr != self.address:
            raise OSError(121, "Remote I/O error")

    def read_byte_data(self, addr: int, reg: int) -> int:
        self._check(addr)
        return self._read(reg)

    def write_byte_data(self, addr: int, reg: int, value: int) -> None:
        self._check(addr)
        self._write(reg, value)

    def read_i2c_block_data(self, addr: int, reg: int, length: int) -> list[int]:
        self._check(addr)
        return [self._read(reg + i) for i in range(length)]

    def write_i2c_block_data(self, addr: int, reg: int, data: list[int]) -> None:
        self._check(addr)
        for i, value in enumerate(data):
            self._write(reg + i, value)

    # -- chip behaviour ---------------------------------------------------------------

    @property
    def page(self) -> int:
        return self.regs.get((0, 0xFF), 0)

    def key(self, reg: int) -> tuple[int, int]:
        return (0, reg) if reg in GLOBAL else (self.page, reg)

    def _read(self, reg: int) -> int:
        page = self.page
        if page == 0 and reg == 0xC0:
            return self.model
        if page == 1 and reg == 0x91:
            unlocked = self.regs.get((0, 0x80)) == 1 and self.regs.get((1, 0x00)) == 0
            return self.stop_variable if unlocked else 0
        if page == 7 and reg == 0x83:
            return self._poll_nvm()
        if page == 7 and reg == 0x92:
            return self.spad_info if self._nvm_countdown == 0 else 0
        if page == 0 and 0xB0 <= reg <= 0xB5 and (0, reg) not in self.regs:
            return self.nvm_map[reg - 0xB0]
        if page == 0 and reg == 0x00:
            if self._start_countdown > 0:
                self._start_countdown -= 1
                return 0x01
            return 0x00
        if page == 0 and reg == 0x13:
            return self._poll_result()
        if page == 0 and reg in (0x1E, 0x1F):
            value = 8190 if self.distance_mm is None else self.distance_mm
            return value >> 8 if reg == 0x1E else value & 0xFF
        return self.regs.get(self.key(reg), 0)

    def _write(self, reg: int, value: int) -> None:
        assert 0 <= value <= 0xFF, f"register 0x{reg:02x} written with {value}"
        self.regs[self.key(reg)] = value
        page = self.page
        self.writes.append((*self.key(reg), value))
        if page == 1 and reg == 0x91 and self.regs.get((0, 0x80)) == 1:
            self._armed_stop = value
        if page == 7 and reg == 0x83 and value == 0x00:
            ready = self.regs.get((7, 0x94)) == 0x6B and self.regs.get((7, 0x81)) == 1
            if ready and self.nvm_works:
                self._nvm_countdown = self.polls
        if page == 0 and reg == 0x00:
            self._sysrange_start(value)
        if page == 0 and reg == 0x0B and value & 0x01:
            self._interrupt = 0
            if self.mode in ("back-to-back", "timed"):
                self._result_countdown = self.polls

    def _poll_nvm(self) -> int:
        if self._nvm_countdown is None:
            return 0x00
        if self._nvm_countdown > 0:
            self._nvm_countdown -= 1
            return 0x00
        return 0x01

    def _poll_result(self) -> int:
        if self._result_countdown is None:
            return self._interrupt
        if self._result_countdown > 0:
            self._result_countdown -= 1
            return 0
        self._result_countdown = None
        self._interrupt = 0x04  # new sample ready
        self._finish()
        return self._interrupt

    def _sysrange_start(self, value: int) -> None:
        sequence = self.regs.get((0, 0x01), 0)
        if value == 0x41 and sequence == 0x01:
            self.mode = "vhv"
        elif value == 0x01 and sequence == 0x02:
            self.mode = "phase"
        elif value == 0x01 and self.mode in ("back-to-back", "timed"):
            self.mode = "idle"  # stop continuous ranging
            return
        elif value == 0x01:
            self.mode = "single"
            self._start_countdown = 1
        elif value in (0x02, 0x04):
            self.mode = "back-to-back" if value == 0x02 else "timed"
        else:
            return
        self._result_countdown = self.polls

    def _finish(self) -> None:
        if self.mode in ("vhv", "phase"):
            self.calibrations.append((self.mode, self.regs.get((0, 0x01), 0)))
        else:
            ok = self._armed_stop == self.stop_variable
            self.ranging.append((self.mode, self.distance_mm if ok else None))


def make(fake: FakeVL53L0X, **kwargs) -> VL53L0X:  # noqa: ANN003
    return VL53L0X(fake, io_timeout_s=0.2, sleep=lambda s: None, **kwargs)


def test_complete_initialisation_sequence() -> None:
    fake = FakeVL53L0X()
    sensor = make(fake)
    sensor.init()

    assert sensor.stop_variable == 0x3C
    assert (sensor.spad_count, sensor.spad_is_aperture) == (5, True)
    assert fake.regs[(0, 0x89)] & 0x01, "2V8 I/O"
    assert fake.regs[(0, 0x88)] == 0x00, "I2C standard mode"
    # DataInit switches the MSRC and pre-range rate checks off (ST's tuning later rewrites 0x60).
    assert (0, 0x60, 0x12) in fake.writes
    assert (fake.regs[(0, 0x44)] << 8 | fake.regs[(0, 0x45)]) == 32, "0.25 MCPS in Q9.7"
    ref_map = [fake.regs[(0, 0xB0 + i)] for i in range(6)]
    bits = [i for i in range(48) if ref_map[i // 8] >> (i % 8) & 1]
    assert bits == [12, 13, 14, 15, 16], "5 aperture SPADs from SPAD 12"
    assert fake.regs[(1, 0x4E)] == 0x2C and fake.regs[(0, 0xB6)] == 0xB4
    # A few of ST's tuning settings, on the right pages.
    assert fake.regs[(0, 0x52)] == 0x96 and fake.regs[(1, 0x47)] == 0x14
    assert fake.regs[(0, 0x70)] == 0x04 and fake.regs[(1, 0x8E)] == 0x01
    assert fake.regs[(0, 0x0A)] == 0x04 and not fake.regs[(0, 0x84)] & 0x10
    assert fake.calibrations == [("vhv", 0x01), ("phase", 0x02)]
    assert fake.regs[(0, 0x01)] == 0xE8 and fake.page == 0
    assert abs(sensor.timing_budget() - 33_000) < 33_000 * 0.02


def test_single_shot_and_out_of_range() -> None:
    fake = FakeVL53L0X()
    sensor = make(fake)
    sensor.init()
    fake.distance_mm = 123
    assert sensor.read_single_mm() == 123
    fake.distance_mm = None
    assert sensor.read_single_mm() is None
    assert fake.ranging == [("single", 123), ("single", None)]


def test_continuous_timed_ranging_at_4_hz() -> None:
    fake = FakeVL53L0X()
    sensor = make(fake)
    sensor.init(timing_budget_us=100_000)
    assert abs(sensor.timing_budget() - 100_000) < 2_000
    sensor.start_continuous(period_ms=250)
    period = int.from_bytes(bytes(fake.regs[(0, 0x04 + i)] for i in range(4)), "big")
    assert period == 250 * 0x46, "period scaled by OSC_CALIBRATE_VAL"
    readings = []
    for mm in (200, 150, 100):
        fake.distance_mm = mm
        readings.append(sensor.read_continuous_mm())
    sensor.stop_continuous()
    assert readings == [200, 150, 100]
    assert fake.mode == "idle" and fake.regs[(1, 0x91)] == 0x00


def test_timing_budget_limits() -> None:
    sensor = make(FakeVL53L0X())
    sensor.init()
    with pytest.raises(ValueError, match="100000"):
        sensor.set_timing_budget(150_000)
    with pytest.raises(ValueError):
        sensor.set_timing_budget(10_000)


def test_not_a_vl53l0x() -> None:
    with pytest.raises(VL53L0XError, match="model id 0x42"):
        make(FakeVL53L0X(model=0x42)).init()


def test_nothing_at_the_address() -> None:
    with pytest.raises(VL53L0XError, match="no device answers at I2C address 0x30"):
        make(FakeVL53L0X(), address=0x30).init()


def test_spad_handshake_that_never_completes_times_out() -> None:
    with pytest.raises(VL53L0XError, match="SPAD info"):
        make(FakeVL53L0X(nvm_works=False)).init()


def test_timeout_encoding_round_trips() -> None:
    for mclks in (1, 100, 255, 256, 257, 1000, 5000, 40000):
        decoded = decode_timeout(encode_timeout(mclks))
        assert decoded <= mclks and mclks - decoded < max(2, mclks // 128)
