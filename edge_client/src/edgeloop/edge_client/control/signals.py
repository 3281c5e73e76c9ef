"""Signals to the people around the car: a buzzer and an LED behind a small interface.

:class:`ConsoleSignals` writes what a buzzer would do as text (simulator, laptops);
:class:`GpioSignals` drives a real buzzer and LED on a Raspberry Pi through gpiozero,
which is imported only when that class is used (it is not installed on x86 hosts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import click


class Signals(Protocol):
    """What the parking controller can signal."""

    def proximity(self, distance_mm: float | None) -> None:
        """The current distance estimate (None: unknown); closer means faster beeps."""

    def stopped(self, reason: str) -> None:
        """The car stopped, and why."""

    def close(self) -> None:
        """Switch everything off."""


def beep_level(distance_mm: float | None, stop_mm: float = 30.0) -> int:
    """Buzzer cadence 0 (silent) .. 3 (continuous), like a car's parking sensor."""
    if distance_mm is None:
        return 0
    for level, limit in ((3, stop_mm), (2, 80.0), (1, 160.0)):
        if distance_mm <= limit:
            return level
    return 0


class ConsoleSignals:
    """Signals as text lines; writes only when the cadence changes."""

    def __init__(self, write: Callable[[str], None] | None = None, stop_mm: float = 30.0) -> None:
        self._write = write or (lambda line: click.echo(line, err=True))
        self._stop_mm = stop_mm
        self._level = -1

    def proximity(self, distance_mm: float | None) -> None:
        """Report the buzzer cadence when it changes."""
        level = beep_level(distance_mm, self._stop_mm)
        if level != self._level:
            self._level = level
            self._write(f"buzzer {'.' * level or 'off'}  (distance {_mm(distance_mm)})")

    def stopped(self, reason: str) -> None:
        """Report the stop."""
        self._write(f"STOP: {reason}")
        self._level = -1

    def close(self) -> None:
        """Nothing to switch off."""


class GpioSignals:
    """A buzzer and an LED on Raspberry Pi GPIO pins (BCM numbering), through gpiozero."""

    _CADENCE = {1: (0.05, 0.4), 2: (0.05, 0.12)}

    def __init__(self, buzzer_pin: int = 17, led_pin: int = 27, stop_mm: float = 30.0) -> None:
        try:
            import gpiozero  # noqa: PLC0415 - only present on a Pi
        except ImportError as exc:
            raise RuntimeError("GpioSignals needs gpiozero (pip install gpiozero on the Pi)") \
                from exc
        self._buzzer: Any = gpiozero.Buzzer(buzzer_pin)
        self._led: Any = gpiozero.LED(led_pin)
        self._stop_mm = stop_mm
        self._level = -1

    def proximity(self, distance_mm: float | None) -> None:
        """Beep faster as the wall gets closer; the LED is on inside the stop distance."""
        level = beep_level(distance_mm, self._stop_mm)
        if level == self._level:
            return
        self._level = level
        if level == 0:
            self._buzzer.off()
        elif level == 3:
            self._buzzer.on()
        else:
            on, off = self._CADENCE[level]
            self._buzzer.beep(on_time=on, off_time=off)
        self._led.value = level == 3

    def stopped(self, reason: str) -> None:
        """Continuous tone and LED on."""
        self._buzzer.on()
        self._led.on()
        self._level = 3

    def close(self) -> None:
        """Switch the buzzer and LED off and release the pins."""
        self._buzzer.close()
        self._led.close()


def _mm(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f} mm"
