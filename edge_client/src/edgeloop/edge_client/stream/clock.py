"""The robot's clock against its gateway's, and the time its frames are stamped with.

A frame's capture time places it in the platform's drift windows, rollups and retention,
so a robot whose clock is off (a Raspberry Pi has no real-time clock: until NTP answers it
runs on the last time it saved) puts its frames where they do not belong. Every Welcome
carries the gateway's clock (``gateway_time``); the robot times the exchange on its own
clock and estimates the offset as ``gateway_time`` minus the midpoint of its Hello's
sending and the Welcome's arrival (right to half the round trip, milliseconds on a LAN).

A robot further off than :data:`~edgeloop.platform.gateway_status.CLOCK_OFF_S` says so in
its log (the gateway and the console say so too). With ``from_gateway`` (``edgeloop-edge
drive --clock-from-gateway``, for robots that cannot reach an NTP server) it stamps its
frames on the gateway's clock instead, from the first Welcome on; frames captured before
any Welcome keep the robot's own time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from edgeloop.platform.gateway_status import clock_offset_text, is_clock_off

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RobotClock:
    """The robot's clock (``read``), its offset from the gateway's once a Welcome told it, and
    the time frames are stamped with (:meth:`now`)."""

    read: Callable[[], datetime] = field(default=_utc_now)
    """The robot's own clock (a simulated robot's may be set off on purpose)."""
    from_gateway: bool = False
    """Stamp frames on the gateway's clock once its offset is known."""
    offset: timedelta | None = None
    """The gateway's clock minus the robot's, from the latest Welcome (None: none yet)."""
    _told: bool = False

    def now(self) -> datetime:
        """The time to stamp a frame captured now with."""
        if self.from_gateway and self.offset is not None:
            return self.read() + self.offset
        return self.read()

    def welcomed(self, sent: datetime, gateway_time: datetime, arrived: datetime) -> None:
        """A Welcome stamped ``gateway_time`` answered the Hello sent at ``sent`` and arrived
        at ``arrived`` (both on :attr:`read`'s clock)."""
        self.offset = gateway_time - (sent + (arrived - sent) / 2)
        behind = self.offset.total_seconds()  # how far the robot's clock is behind
        if self._told or not is_clock_off(behind):
            return
        self._told = True  # once a session: every reconnect would say it again
        # "60 min behind the gateway's", "3.0 s ahead of the gateway's"
        how_far = clock_offset_text(-behind).replace("ahead", "ahead of") + " the gateway's"
        extra = {"clock_offset_s": round(-behind, 3)}
        if self.from_gateway:
            log.info("frames are stamped on the gateway's clock: this robot's is %s", how_far,
                     extra=extra)
        else:
            log.warning("this robot's clock is %s: its frames' times are off by as much; set "
                        "it (NTP), or stamp them on the gateway's clock (--clock-from-gateway)",
                        how_far, extra=extra)
