"""Each device's contact with this gateway process: streams open, when it last sent a frame.

The features service knows a device's frames once they are recorded; while the spool is full
or features is down, a robot that streams and gets its answers leaves no record there, and
would look offline. The gateway sees every stream and every frame, so it keeps the contact
and writes it into its status file (:mod:`edgeloop.gateway.status_file`), where the console
and `edgeloop status` read it. Kept in memory, and taken over at start from the status file
the process before left in the same spool folder (:meth:`DeviceContacts.restore`), so a
restart (the supervisor's, after a crash) does not make the fleet forget when robots that have
not reconnected yet were last seen.

Each device's clock is checked against the gateway's on the way: a frame's capture time comes
from the robot, and places the frame in the drift windows, the rollups and the retention's
days. Over each status interval the largest (capture time - arrival) of its live frames
estimates its clock's offset (less the quickest frame's way here, milliseconds on a LAN: the
estimate errs towards "behind" by that much); late frames, sent again from the robot's
buffer, say nothing about its clock, nor do those of a stream whose Hello says
``simulated_clock`` (a simulator replaying history). A device further off than
:data:`~edgeloop.platform.gateway_status.CLOCK_OFF_S` is logged when it goes off and when it
comes back, and the console marks it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from edgeloop.platform.gateway_status import (
    CLOCK_OFF_S,
    DeviceContact,
    GatewayStatus,
    is_clock_off,
)

log = logging.getLogger(__name__)

KEEP_S = 24 * 3600.0
"""A device with no stream open is forgotten this long after its last contact."""


@dataclass
class Contact:
    """One device's contact, updated in place as its streams open, send and close."""

    device_id: str
    connected_at: float
    streams: int = 0
    disconnected_at: float | None = None
    last_frame_at: float | None = None
    frames: int = 0
    clock_offset_s: float | None = None
    """Its clock's offset from the gateway's as last estimated (module doc)."""
    _rated: tuple[float, int] | None = None
    """(time, frames) when its rate was last taken."""
    _ahead: float | None = None
    """The largest (capture time - arrival) of its live frames since the last record."""

    def frame(self, at: float, captured: float | None = None) -> None:
        """A frame arrived at ``at``; ``captured``: the capture time of a live frame that
        carries one (called for every frame: kept to a few stores)."""
        self.last_frame_at = at
        self.frames += 1
        if captured is not None and (self._ahead is None or captured - at > self._ahead):
            self._ahead = captured - at

    def record(self, now: float) -> DeviceContact:
        """The contact as the status file holds it, with its frame rate since the last one
        and its clock's offset over the same time (the one before when no live frame came)."""
        then, frames_then = self._rated or (self.connected_at, 0)
        fps = (self.frames - frames_then) / (now - then) if now > then else 0.0
        self._rated = (now, self.frames)
        if self._ahead is not None:
            self._estimate_clock(self._ahead)
            self._ahead = None
        return DeviceContact(self.device_id, self.streams, self.connected_at,
                             self.disconnected_at, self.last_frame_at, self.frames, fps,
                             self.clock_offset_s)

    def _estimate_clock(self, offset_s: float) -> None:
        was_off = is_clock_off(self.clock_offset_s)
        self.clock_offset_s = offset_s
        is_off = is_clock_off(offset_s)
        if is_off and not was_off:
            log.warning("device clock off: its frames' capture times are off by as much; "
                        "set its clock (NTP)", extra={
                            "device_id": self.device_id, "clock_offset_s": round(offset_s, 3),
                            "limit_s": CLOCK_OFF_S})
        elif was_off and not is_off:
            log.info("device clock in step again", extra={
                "device_id": self.device_id, "clock_offset_s": round(offset_s, 3)})


class DeviceContacts:
    """Every device seen since the gateway started, for :data:`KEEP_S` after its last contact."""

    def __init__(self, clock: Callable[[], float] = time.time, keep_s: float = KEEP_S) -> None:
        self.clock = clock
        self.keep_s = keep_s
        self._devices: dict[str, Contact] = {}
        self._forgotten_frames = 0

    @contextmanager
    def stream(self, device_id: str) -> Iterator[Contact]:
        """Count one open stream of the device for the block; yields its contact."""
        now = self.clock()
        contact = self._devices.get(device_id)
        if contact is None:
            contact = self._devices[device_id] = Contact(device_id, now)
        contact.streams += 1
        contact.connected_at, contact.disconnected_at = now, None
        try:
            yield contact
        finally:
            contact.streams -= 1
            if not contact.streams:
                contact.disconnected_at = self.clock()

    def restore(self, previous: GatewayStatus) -> int:
        """Take over the contacts of the process that wrote ``previous`` (this spool folder's
        last status); returns how many. Their streams ended with that process: one it still
        listed open closed no earlier than its last record. Frames count from this start."""
        restored = [record for record in previous.devices if record.device_id not in self._devices]
        for record in restored:
            closed = record.disconnected_at if not record.streams else previous.written_at
            self._devices[record.device_id] = Contact(
                record.device_id, record.connected_at, disconnected_at=closed,
                last_frame_at=record.last_frame_at, clock_offset_s=record.clock_offset_s)
        return len(restored)

    def open_streams(self, device_id: str) -> int:
        """Streams the device holds now."""
        contact = self._devices.get(device_id)
        return contact.streams if contact else 0

    def frames_received(self) -> int:
        """Frames every device sent since the gateway started, forgotten ones' included."""
        return self._forgotten_frames + sum(c.frames for c in self._devices.values())

    def records(self) -> tuple[DeviceContact, ...]:
        """Each device's contact, most recent first, its rate over the time since the last
        call (the status file's interval); forgets those idle past ``keep_s``."""
        now = self.clock()
        for device_id, contact in list(self._devices.items()):
            if not contact.streams and (contact.disconnected_at or 0.0) < now - self.keep_s:
                self._forgotten_frames += contact.frames
                del self._devices[device_id]
        records = [contact.record(now) for contact in self._devices.values()]
        return tuple(sorted(records, key=lambda r: r.last_contact, reverse=True))
