"""The robot's clock against the gateway's: the offset from a Welcome, and frame stamps."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from edgeloop.edge_client.stream.clock import RobotClock

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Fixed:
    """A robot clock that reads what the test sets."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def test_the_offset_is_taken_at_the_midpoint_of_the_exchange() -> None:
    clock = RobotClock(read=Fixed(T0))
    # Hello sent at T0, Welcome back 200 ms later, stamped by a gateway an hour ahead
    clock.welcomed(T0, T0 + timedelta(hours=1, milliseconds=100), T0 + timedelta(milliseconds=200))
    assert clock.offset == timedelta(hours=1)
    assert clock.now() == T0, "its own clock unless asked"


def test_frames_go_on_the_gateways_clock_once_a_welcome_told_it() -> None:
    robot = Fixed(T0)
    clock = RobotClock(read=robot, from_gateway=True)
    assert clock.now() == T0, "no Welcome yet: the robot's own time"
    clock.welcomed(T0, T0 - timedelta(minutes=30), T0)
    robot.at = T0 + timedelta(seconds=5)
    assert clock.now() == T0 + timedelta(seconds=5) - timedelta(minutes=30)


@pytest.mark.parametrize(("from_gateway", "level", "words"), [
    (False, logging.WARNING, "this robot's clock is 3.0 s ahead of the gateway's"),
    (True, logging.INFO, "frames are stamped on the gateway's clock: this robot's is 3.0 s "
                         "ahead of the gateway's")])
def test_a_clock_off_is_said_once(caplog: pytest.LogCaptureFixture, from_gateway: bool,
                                  level: int, words: str) -> None:
    caplog.set_level(logging.INFO, logger="edgeloop.edge_client.stream.clock")
    clock = RobotClock(read=Fixed(T0), from_gateway=from_gateway)
    for _ in range(3):  # reconnects
        clock.welcomed(T0, T0 - timedelta(seconds=3), T0)
    (record,) = caplog.records
    assert record.levelno == level and record.getMessage().startswith(words)
    assert record.clock_offset_s == 3.0


def test_a_clock_in_step_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgeloop.edge_client.stream.clock")
    RobotClock(read=Fixed(T0)).welcomed(T0, T0 + timedelta(milliseconds=30), T0)
    assert caplog.records == []
