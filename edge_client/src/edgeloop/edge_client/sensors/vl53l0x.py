"""VL53L0X time-of-flight range sensor driver on smbus2.

The register sequence follows ST's VL53L0X API (STSW-IMG005: ``VL53L0X_DataInit``,
``VL53L0X_StaticInit``, ``VL53L0X_PerformRefCalibration``) as distilled by Pololu's
open-source VL53L0X library: model id check, 2V8 I/O, I2C standard mode and the stop
variable, the SPAD info handshake and reference SPAD map, ST's default tuning settings,
"new sample ready" interrupt, measurement timing budget, and VHV and phase calibration.

The bus is anything with smbus2's ``SMBus`` byte and block methods, so tests drive the
driver against a register-level fake device instead of hardware.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = 0x29
MODEL_ID = 0xEE
OUT_OF_RANGE = 8190
"""The sensor reports 8190 or 8191 mm when no target was detected."""
MAX_TIMING_BUDGET_US = 100_000
"""At most 100 ms per measurement, so ranging keeps up with 4 Hz capture and more."""
MIN_TIMING_BUDGET_US = 20_000

# Register addresses (ST API vl53l0x_device.h).
SYSRANGE_START = 0x00
SYSTEM_SEQUENCE_CONFIG = 0x01
SYSTEM_INTERMEASUREMENT_PERIOD = 0x04
SYSTEM_INTERRUPT_CONFIG_GPIO = 0x0A
SYSTEM_INTERRUPT_CLEAR = 0x0B
RESULT_INTERRUPT_STATUS = 0x13
RESULT_RANGE_STATUS = 0x14
FINAL_RANGE_CONFIG_MIN_COUNT_RATE_RTN_LIMIT = 0x44
MSRC_CONFIG_TIMEOUT_MACROP = 0x46
PRE_RANGE_CONFIG_VCSEL_PERIOD = 0x50
PRE_RANGE_CONFIG_TIMEOUT_MACROP_HI = 0x51
MSRC_CONFIG_CONTROL = 0x60
FINAL_RANGE_CONFIG_VCSEL_PERIOD = 0x70
FINAL_RANGE_CONFIG_TIMEOUT_MACROP_HI = 0x71
GPIO_HV_MUX_ACTIVE_HIGH = 0x84
VHV_CONFIG_PAD_SCL_SDA__EXTSUP_HV = 0x89
GLOBAL_CONFIG_SPAD_ENABLES_REF_0 = 0xB0
GLOBAL_CONFIG_REF_EN_START_SELECT = 0xB6
DYNAMIC_SPAD_NUM_REQUESTED_REF_SPAD = 0x4E
DYNAMIC_SPAD_REF_EN_START_OFFSET = 0x4F
IDENTIFICATION_MODEL_ID = 0xC0
OSC_CALIBRATE_VAL = 0xF8

# ST's DefaultTuningSettings (vl53l0x_tuning.h): (register, value); 0xFF selects the page.
TUNING_SETTINGS: tuple[tuple[int, int], ...] = (
    (0xFF, 0x01), (0x00, 0x00), (0xFF, 0x00), (0x09, 0x00), (0x10, 0x00), (0x11, 0x00),
    (0x24, 0x01), (0x25, 0xFF), (0x75, 0x00), (0xFF, 0x01), (0x4E, 0x2C), (0x48, 0x00),
    (0x30, 0x20), (0xFF, 0x00), (0x30, 0x09), (0x54, 0x00), (0x31, 0x04), (0x32, 0x03),
    (0x40, 0x83), (0x46, 0x25), (0x60, 0x00), (0x27, 0x00), (0x50, 0x06), (0x51, 0x00),
    (0x52, 0x96), (0x56, 0x08), (0x57, 0x30), (0x61, 0x00), (0x62, 0x00), (0x64, 0x00),
    (0x65, 0x00), (0x66, 0xA0), (0xFF, 0x01), (0x22, 0x32), (0x47, 0x14), (0x49, 0xFF),
    (0x4A, 0x00), (0xFF, 0x00), (0x7A, 0x0A), (0x7B, 0x00), (0x78, 0x21), (0xFF, 0x01),
    (0x23, 0x34), (0x42, 0x00), (0x44, 0xFF), (0x45, 0x26), (0x46, 0x05), (0x40, 0x40),
    (0x0E, 0x06), (0x20, 0x1A), (0x43, 0x40), (0xFF, 0x00), (0x34, 0x03), (0x35, 0x44),
    (0xFF, 0x01), (0x31, 0x04), (0x4B, 0x09), (0x4C, 0x05), (0x4D, 0x04), (0xFF, 0x00),
    (0x44, 0x00), (0x45, 0x20), (0x47, 0x08), (0x48, 0x28), (0x67, 0x00), (0x70, 0x04),
    (0x71, 0x01), (0x72, 0xFE), (0x76, 0x00), (0x77, 0x00), (0xFF, 0x01), (0x0D, 0x01),
    (0xFF, 0x00), (0x80, 0x01), (0x01, 0xF8), (0xFF, 0x01), (0x8E, 0x01), (0x00, 0x01),
    (0xFF, 0x00), (0x80, 0x00),
)


class SMBusLike(Protocol):
    """The part of ``smbus2.SMBus`` the driver uses."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None: ...


class VL53L0XError(Exception):
    """The sensor is missing, not a VL53L0X, or did not answer in time."""


class VL53L0X:
    """One VL53L0X on an I2C bus."""

    def __init__(self, bus: SMBusLike, address: int = DEFAULT_ADDRESS, io_timeout_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.bus = bus
        self.address = address
        self.io_timeout_s = io_timeout_s
        self._clock = clock
        self._sleep = sleep
        self.stop_variable = 0
        self.spad_count = 0
        self.spad_is_aperture = False
        self.timing_budget_us = 0

    @classmethod
    def open(cls, bus_number: int = 1, address: int = DEFAULT_ADDRESS) -> VL53L0X:
        """The sensor on ``/dev/i2c-<bus_number>`` (Raspberry Pi: bus 1)."""
        import smbus2  # noqa: PLC0415 - only needed with real hardware

        try:
            return cls(smbus2.SMBus(bus_number), address)
        except OSError as exc:
            raise VL53L0XError(f"cannot open I2C bus {bus_number}: {exc}") from exc

    # -- register access ------------------------------------------------------------

    def read(self, reg: int) -> int:
        """Read an 8-bit register."""
        return self.bus.read_byte_data(self.address, reg)

    def write(self, reg: int, value: int) -> None:
        """Write an 8-bit register."""
        self.bus.write_byte_data(self.address, reg, value & 0xFF)

    def read16(self, reg: int) -> int:
        """Read a big-endian 16-bit register."""
        hi, lo = self.bus.read_i2c_block_data(self.address, reg, 2)
        return (hi << 8) | lo

    def write16(self, reg: int, value: int) -> None:
        """Write a big-endian 16-bit register."""
        self.bus.write_i2c_block_data(self.address, reg, [(value >> 8) & 0xFF, value & 0xFF])

    def write32(self, reg: int, value: int) -> None:
        """Write a big-endian 32-bit register."""
        self.bus.write_i2c_block_data(self.address, reg, list(value.to_bytes(4, "big")))

    def _write_all(self, pairs: tuple[tuple[int, int], ...]) -> None:
        for reg, value in pairs:
            self.write(reg, value)

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = self._clock() + self.io_timeout_s
        while not ready():
            if self._clock() > deadline:
                raise VL53L0XError(f"VL53L0X timeout waiting for {what}")
            self._sleep(0.001)

    # -- initialisation -------------------------------------------------------------

    def init(self, io_2v8: bool = True, timing_budget_us: int = 33_000) -> None:
        """Run the complete initialisation; raises :class:`VL53L0XError` on failure."""
        try:
            model = self.read(IDENTIFICATION_MODEL_ID)
        except OSError as exc:
            raise VL53L0XError(f"no device answers at I2C address 0x{self.address:02x}: {exc}") \
                from exc
        if model != MODEL_ID:
            raise VL53L0XError(f"device at 0x{self.address:02x} is not a VL53L0X "
                               f"(model id 0x{model:02x}, expected 0x{MODEL_ID:02x})")
        self._data_init(io_2v8)
        self._static_init()
        self.set_timing_budget(timing_budget_us)
        self._ref_calibration()
        log.info("VL53L0X ready", extra={"address": hex(self.address), "spads": self.spad_count,
                                         "aperture": self.spad_is_aperture,
                                         "timing_budget_us": self.timing_budget_us})

    def _data_init(self, io_2v8: bool) -> None:
        if io_2v8:
            self.write(VHV_CONFIG_PAD_SCL_SDA__EXTSUP_HV,
                       self.read(VHV_CONFIG_PAD_SCL_SDA__EXTSUP_HV) | 0x01)
        self.write(0x88, 0x00)  # "Set I2C standard mode"
        self._write_all(((0x80, 0x01), (0xFF, 0x01), (0x00, 0x00)))
        self.stop_variable = self.read(0x91)
        self._write_all(((0x00, 0x01), (0xFF, 0x00), (0x80, 0x00)))
        # Disable the SIGNAL_RATE_MSRC and SIGNAL_RATE_PRE_RANGE limit checks.
        self.write(MSRC_CONFIG_CONTROL, self.read(MSRC_CONFIG_CONTROL) | 0x12)
        self.set_signal_rate_limit(0.25)
        self.write(SYSTEM_SEQUENCE_CONFIG, 0xFF)

    def _static_init(self) -> None:
        self.spad_count, self.spad_is_aperture = self._spad_info()
        self._set_reference_spads()
        self._write_all(TUNING_SETTINGS)
        # Interrupt on "new sample ready", active low, cleared.
        self.write(SYSTEM_INTERRUPT_CONFIG_GPIO, 0x04)
        self.write(GPIO_HV_MUX_ACTIVE_HIGH, self.read(GPIO_HV_MUX_ACTIVE_HIGH) & ~0x10)
        self.write(SYSTEM_INTERRUPT_CLEAR, 0x01)
        # Disable MSRC and TCC by default (ST API does the same).
        self.write(SYSTEM_SEQUENCE_CONFIG, 0xE8)

    def _spad_info(self) -> tuple[int, bool]:
        self._write_all(((0x80, 0x01), (0xFF, 0x01), (0x00, 0x00), (0xFF, 0x06)))
        self.write(0x83, self.read(0x83) | 0x04)
        self._write_all(((0xFF, 0x07), (0x81, 0x01), (0x80, 0x01), (0x94, 0x6B), (0x83, 0x00)))
        self._wait(lambda: self.read(0x83) != 0x00, "SPAD info")
        self.write(0x83, 0x01)
        info = self.read(0x92)
        self._write_all(((0x81, 0x00), (0xFF, 0x06)))
        self.write(0x83, self.read(0x83) & ~0x04)
        self._write_all(((0xFF, 0x01), (0x00, 0x01), (0xFF, 0x00), (0x80, 0x00)))
        return info & 0x7F, bool(info & 0x80)

    def _set_reference_spads(self) -> None:
        spad_map = self.bus.read_i2c_block_data(self.address, GLOBAL_CONFIG_SPAD_ENABLES_REF_0, 6)
        self._write_all(((0xFF, 0x01), (DYNAMIC_SPAD_REF_EN_START_OFFSET, 0x00),
                         (DYNAMIC_SPAD_NUM_REQUESTED_REF_SPAD, 0x2C), (0xFF, 0x00),
                         (GLOBAL_CONFIG_REF_EN_START_SELECT, 0xB4)))
        first = 12 if self.spad_is_aperture else 0  # 12 is the first aperture SPAD
        enabled = 0
        for i in range(48):
            bit = 1 << (i % 8)
            if i < first or enabled == self.spad_count:
                spad_map[i // 8] &= ~bit
            elif spad_map[i // 8] & bit:
                enabled += 1
        self.bus.write_i2c_block_data(self.address, GLOBAL_CONFIG_SPAD_ENABLES_REF_0, spad_map)

    def _ref_calibration(self) -> None:
        self.write(SYSTEM_SEQUENCE_CONFIG, 0x01)
        self._single_ref_calibration(0x40, "VHV calibration")
        self.write(SYSTEM_SEQUENCE_CONFIG, 0x02)
        self._single_ref_calibration(0x00, "phase calibration")
        self.write(SYSTEM_SEQUENCE_CONFIG, 0xE8)

    def _single_ref_calibration(self, vhv_init_byte: int, what: str) -> None:
        self.write(SYSRANGE_START, 0x01 | vhv_init_byte)
        self._wait(lambda: self.read(RESULT_INTERRUPT_STATUS) & 0x07 != 0, what)
        self.write(SYSTEM_INTERRUPT_CLEAR, 0x01)
        self.write(SYSRANGE_START, 0x00)

    # -- configuration --------------------------------------------------------------

    def set_signal_rate_limit(self, mcps: float) -> None:
        """Minimum return signal rate for a valid reading, in MCPS (Q9.7 fixed point)."""
        if not 0 <= mcps <= 511.99:
            raise ValueError(f"signal rate limit must be in [0, 511.99] MCPS, got {mcps}")
        self.write16(FINAL_RANGE_CONFIG_MIN_COUNT_RATE_RTN_LIMIT, int(mcps * (1 << 7)))

    def set_timing_budget(self, budget_us: int) -> None:
        """Time allowed for one measurement, 20-100 ms; the final range step gets the rest."""
        if not MIN_TIMING_BUDGET_US <= budget_us <= MAX_TIMING_BUDGET_US:
            raise ValueError(f"timing budget must be {MIN_TIMING_BUDGET_US}-"
                             f"{MAX_TIMING_BUDGET_US} us, got {budget_us}")
        steps = self._sequence_steps()
        used = 1320 + 960 + _overheads(steps)
        if not steps.final_range:
            raise VL53L0XError("final range step is disabled; cannot apply a timing budget")
        used += 550
        if used > budget_us:
            raise ValueError(f"timing budget {budget_us} us is below the sequence's {used} us")
        final_mclks = _us_to_mclks(budget_us - used, steps.final_vcsel_pclks)
        if steps.pre_range:
            final_mclks += steps.pre_range_mclks
        self.write16(FINAL_RANGE_CONFIG_TIMEOUT_MACROP_HI, encode_timeout(final_mclks))
        self.timing_budget_us = budget_us

    def timing_budget(self) -> int:
        """The measurement timing budget read back from the device, in microseconds."""
        steps = self._sequence_steps()
        budget = 1910 + 960 + _overheads(steps)
        if steps.final_range:
            budget += steps.final_range_us + 550
        return budget

    def _sequence_steps(self) -> _Steps:
        config = self.read(SYSTEM_SEQUENCE_CONFIG)
        pre_pclks = decode_vcsel_period(self.read(PRE_RANGE_CONFIG_VCSEL_PERIOD))
        final_pclks = decode_vcsel_period(self.read(FINAL_RANGE_CONFIG_VCSEL_PERIOD))
        msrc_mclks = self.read(MSRC_CONFIG_TIMEOUT_MACROP) + 1
        pre_mclks = decode_timeout(self.read16(PRE_RANGE_CONFIG_TIMEOUT_MACROP_HI))
        final_mclks = decode_timeout(self.read16(FINAL_RANGE_CONFIG_TIMEOUT_MACROP_HI))
        steps = _Steps(config, pre_pclks, final_pclks, pre_mclks)
        steps.msrc_us = _mclks_to_us(msrc_mclks, pre_pclks)
        steps.pre_range_us = _mclks_to_us(pre_mclks, pre_pclks)
        if steps.pre_range:
            final_mclks -= pre_mclks
        steps.final_range_us = _mclks_to_us(final_mclks, final_pclks)
        return steps

    # -- ranging --------------------------------------------------------------------

    def _restore_stop_variable(self) -> None:
        self._write_all(((0x80, 0x01), (0xFF, 0x01), (0x00, 0x00), (0x91, self.stop_variable),
                         (0x00, 0x01), (0xFF, 0x00), (0x80, 0x00)))

    def read_single_mm(self) -> int | None:
        """One single-shot measurement in mm; None when no target is in range."""
        self._restore_stop_variable()
        self.write(SYSRANGE_START, 0x01)
        self._wait(lambda: self.read(SYSRANGE_START) & 0x01 == 0, "single-shot start")
        return self.read_continuous_mm()

    def start_continuous(self, period_ms: int = 0) -> None:
        """Range back-to-back (``period_ms`` 0) or every ``period_ms`` milliseconds."""
        self._restore_stop_variable()
        if period_ms:
            osc = self.read16(OSC_CALIBRATE_VAL)
            self.write32(SYSTEM_INTERMEASUREMENT_PERIOD, period_ms * osc if osc else period_ms)
            self.write(SYSRANGE_START, 0x04)  # timed mode
        else:
            self.write(SYSRANGE_START, 0x02)  # back-to-back mode

    def stop_continuous(self) -> None:
        """Stop continuous ranging."""
        self.write(SYSRANGE_START, 0x01)
        self._write_all(((0xFF, 0x01), (0x00, 0x00), (0x91, 0x00), (0x00, 0x01), (0xFF, 0x00)))

    def read_continuous_mm(self) -> int | None:
        """The next measurement in mm (continuous mode); None when no target is in range."""
        self._wait(lambda: self.read(RESULT_INTERRUPT_STATUS) & 0x07 != 0, "measurement")
        # Range is at RESULT_RANGE_STATUS + 10 (linearity gain 1000, no fractional mm).
        mm = self.read16(RESULT_RANGE_STATUS + 10)
        self.write(SYSTEM_INTERRUPT_CLEAR, 0x01)
        return None if mm >= OUT_OF_RANGE else mm


class _Steps:
    """Sequence step enables and timeouts as read from the device."""

    def __init__(self, config: int, pre_pclks: int, final_pclks: int, pre_mclks: int) -> None:
        self.tcc = bool(config >> 4 & 1)
        self.dss = bool(config >> 3 & 1)
        self.msrc = bool(config >> 2 & 1)
        self.pre_range = bool(config >> 6 & 1)
        self.final_range = bool(config >> 7 & 1)
        self.pre_vcsel_pclks = pre_pclks
        self.final_vcsel_pclks = final_pclks
        self.pre_range_mclks = pre_mclks
        self.msrc_us = self.pre_range_us = self.final_range_us = 0


def _overheads(steps: _Steps) -> int:
    used = 0
    if steps.tcc:
        used += steps.msrc_us + 590
    if steps.dss:
        used += 2 * (steps.msrc_us + 690)
    elif steps.msrc:
        used += steps.msrc_us + 660
    if steps.pre_range:
        used += steps.pre_range_us + 660
    return used


def decode_vcsel_period(reg: int) -> int:
    """VCSEL pulse period in PCLKs from its register value."""
    return (reg + 1) << 1


def _macro_period_ns(vcsel_pclks: int) -> int:
    return (2304 * vcsel_pclks * 1655 + 500) // 1000


def _mclks_to_us(mclks: int, vcsel_pclks: int) -> int:
    period = _macro_period_ns(vcsel_pclks)
    return (mclks * period + period // 2) // 1000


def _us_to_mclks(us: int, vcsel_pclks: int) -> int:
    period = _macro_period_ns(vcsel_pclks)
    return (us * 1000 + period // 2) // period


def decode_timeout(reg: int) -> int:
    """Timeout in MCLKs from the register format (LSByte * 2^MSByte) + 1."""
    return ((reg & 0xFF) << ((reg >> 8) & 0xFF)) + 1


def encode_timeout(mclks: int) -> int:
    """Register format (LSByte * 2^MSByte) + 1 of a timeout in MCLKs."""
    if mclks <= 0:
        return 0
    ls, ms = mclks - 1, 0
    while ls > 0xFF:
        ls >>= 1
        ms += 1
    return (ms << 8) | (ls & 0xFF)
