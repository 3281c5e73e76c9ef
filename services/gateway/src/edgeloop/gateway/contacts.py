"""Each device's contact with this gateway process: streams open, when it last sent a frame.

The features service knows a device's frames once they are recorded; while the spool is full
or features is down, a robot that streams and gets its answers leaves no record there, and
would look offline. The gateway sees every stream and every frame, so it keeps the contact
and writes it into its status file (:mod:`edgeloop.gateway.status_file`), where the console
and `edgeloop status` read it. Kept in memory, and taken over at start from the status file
the process before left in the same spool folder (:meth:`DeviceContacts.restore`), so a
restart (the supervisor's, after a crash) does not make the fleet forget when robots that have
not reconnected yet were last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from edgeloop.platform.gateway_status import DeviceContact, GatewayStatus

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
    _rated: tuple[float, int] | None = None
    """(time, frames) when its rate was last taken."""

    def frame(self, at: float) -> None:
        """A frame arrived (called for every frame: kept to two stores)."""
        self.last_frame_at = at
        self.frames += 1

    def record(self, now: float) -> DeviceContact:
        """The contact as the status file holds it, with its frame rate since the last one."""
        then, frames_then = self._rated or (self.connected_at, 0)
        fps = (self.frames - frames_then) / (now - then) if now > then else 0.0
        self._rated = (now, self.frames)
        return DeviceContact(self.device_id, self.streams, self.connected_at,
                             self.disconnected_at, self.last_frame_at, self.frames, fps)


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
                last_frame_at=record.last_frame_at)
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
