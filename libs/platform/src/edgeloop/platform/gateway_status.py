"""A gateway process's status file, ``status.json`` in its spool folder: format, write, read.

The gateway rewrites it every few seconds and once when it stops (gateway README, "The
spool's status file"): its spool (backlog, answers not recorded, forwarding), the model
versions it serves with the runtime each runs on, and each device's contact (open streams,
last frame): the one place a device's last contact is known even while its frames are not
being recorded. `edgeloop status` and the console's fleet page read it. It is the one view
of a gateway's inside that the tools share, so its format lives here, once.

A file rather than an RPC: several gateway processes may share one port
(``EDGELOOP_REUSE_PORT``), and a call would reach one of them at random, while each process
writes its own spool's file. It is replaced atomically (written beside, then renamed); on a
full disk, where no new file fits, it is overwritten in place instead (it is padded to a
multiple of :data:`PADDED_BYTES`, so that a later record of the same devices fits; one that
would not fit is written without its devices, whose contacts the readers then take from the
recorded frames alone), and a reader may then catch a torn record once: :func:`read_status`
reads again.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.platform.diskspace import is_low

STATUS_FILE = "status.json"
VERSION = 1
PADDED_BYTES = 4096
"""The file's size is a multiple of this (a filesystem block): whitespace after the JSON, so
that later records fit in place."""
CLOCK_OFF_S = 2.0
"""A device whose clock is further than this from its gateway's is "clock off": the capture
times of its frames, which place them in the drift windows, the rollups, the retention's days
and the console's rates, are off by as much (a clock kept by NTP is within milliseconds)."""
STALE_AFTER_S = 30.0
"""A running gateway rewrites its file every few seconds: one older than this (or than three
of its intervals, if they are longer) says the gateway is stuck, or cannot write even in
place."""
_READ_ATTEMPTS = 3
RECORDING_STATE_WORDS: dict[int, str] = {
    fpb.GATEWAY_RECORDING_STATE_RECORDING: "recording",
    fpb.GATEWAY_RECORDING_STATE_NOT_RECORDING: "not recording",
    fpb.GATEWAY_RECORDING_STATE_DISK_FULL: "disk full",
    fpb.GATEWAY_RECORDING_STATE_FEATURES_FAILING: "features failing",
    fpb.GATEWAY_RECORDING_STATE_STOPPED: "stopped",
}
"""The words of :meth:`GatewayStatus.recording_state` for the features contract's
``GatewayRecordingState`` (gateways' samples); ``stale`` is a reader's word, never sampled."""
RECORDING_STATES_BY_WORD: dict[str, int] = {
    word: state for state, word in RECORDING_STATE_WORDS.items()}
"""The contract's ``GatewayRecordingState`` of each word."""


@dataclass(frozen=True)
class ServedVersion:
    """A model version some deployment names, and what runs it in the gateway now."""

    model: str
    version: str
    runtime: str
    """``tensorflow``, ``litert``, ``litert-quantized`` (embedded host), ``tfserving`` (a TF
    Serving or Ray Serve host), or ``loading``."""


@dataclass(frozen=True)
class DeviceContact:
    """One device as this gateway process last saw it. Times are Unix seconds."""

    device_id: str
    streams: int
    """Streams it holds open to this process now."""
    connected_at: float
    """Its newest stream opened then."""
    disconnected_at: float | None
    """Its last stream closed then (None while one is open)."""
    last_frame_at: float | None
    """Its newest frame arrived then, answered whether or not it could be recorded."""
    frames: int
    """Frames it sent this process since the gateway started."""
    fps: float = 0.0
    """Frames a second it sent over the gateway's last status interval."""
    clock_offset_s: float | None = None
    """How far its clock is ahead of the gateway's (negative: behind), from the capture times
    of its live frames: the largest (capture - arrival) over a status interval, i.e. the
    offset less the quickest frame's way to the gateway (None: no live frame with a capture
    time yet)."""

    @property
    def clock_off(self) -> bool:
        """Its clock is off by more than :data:`CLOCK_OFF_S`."""
        return is_clock_off(self.clock_offset_s)

    @property
    def last_contact(self) -> float:
        """The newest of its stream opening, closing and last frame."""
        return max(t for t in (self.connected_at, self.disconnected_at, self.last_frame_at)
                   if t is not None)


@dataclass(frozen=True)
class GatewayStatus:
    """One gateway process as it last wrote its status. Times are Unix seconds; None: has not
    happened (since the gateway started)."""

    gateway_id: str
    pid: int
    written_at: float
    stopped: bool
    """The gateway has stopped: what is spooled waits for its next start."""
    backlog_bytes: int
    """Bytes on disk that features has not confirmed yet."""
    max_bytes: int
    disk_refused: bool
    """The last append failed (a full disk): nothing is recorded until one works."""
    not_recorded_since: float | None
    """Live frames are answered without a record since then (the spool has no room)."""
    answered_not_recorded: int
    """Frames answered without a record since the gateway started."""
    forwarded_at: float | None
    """Features last confirmed a batch."""
    forward_failing_since: float | None
    """Calls to features have failed since then."""
    interval_s: float
    """How often the gateway rewrites the file."""
    serving: tuple[ServedVersion, ...] = ()
    devices: tuple[DeviceContact, ...] = ()
    """Devices seen since the gateway started (for a day after their last contact)."""
    frames_received: int = 0
    """Frames every device sent since the gateway started (forgotten devices' too)."""
    disk_free_bytes: int | None = None
    """Free bytes on the spool's filesystem when it was written (None: not measured)."""
    disk_total_bytes: int | None = None
    version: int = VERSION

    @property
    def disk_low(self) -> bool:
        """Less than a tenth of the spool's filesystem is free (``diskspace.LOW_FRACTION``):
        once it is full, live frames are answered without a record."""
        return (self.disk_free_bytes is not None and self.disk_total_bytes is not None
                and is_low(self.disk_free_bytes, self.disk_total_bytes))

    @property
    def fill(self) -> float:
        """The backlog's share of the capacity, 0 to 1."""
        return self.backlog_bytes / self.max_bytes if self.max_bytes else 0.0

    def age_s(self, now: float | None = None) -> float:
        """Seconds since it was written."""
        return (time.time() if now is None else now) - self.written_at

    def is_stale(self, now: float | None = None) -> bool:
        """Not rewritten for :data:`STALE_AFTER_S` (or three intervals) although the gateway
        did not say it stopped."""
        return not self.stopped and self.age_s(now) > max(STALE_AFTER_S, 3 * self.interval_s)

    def recording_state(self, now: float | None = None) -> str:
        """The worst of what the status says about recording, in one word: ``stopped``,
        ``stale``, ``not recording`` (live frames answered without a record), ``disk full``,
        ``features failing`` (the backlog grows) or ``recording``."""
        if self.stopped:
            return "stopped"
        if self.is_stale(now):
            return "stale"
        if self.not_recorded_since is not None:
            return "not recording"
        if self.disk_refused:
            return "disk full"
        if self.forward_failing_since is not None:
            return "features failing"
        return "recording"

    def open_streams(self, now: float | None = None) -> dict[str, int]:
        """Streams per device open now; none from a gateway that stopped or went stale."""
        if self.stopped or self.is_stale(now):
            return {}
        return {d.device_id: d.streams for d in self.devices if d.streams}


@dataclass(frozen=True)
class FleetContact:
    """One device over every gateway process."""

    streams: int
    """Streams it holds open to gateways that run now (not stopped, not stale)."""
    last_contact: float
    """Its newest contact with any of them (Unix seconds)."""
    fps: float = 0.0
    """Frames a second it sends to them now (over their last status interval)."""
    clock_offset_s: float | None = None
    """Its clock's offset as the gateway with its newest contact measured it (None: none did)."""

    @property
    def clock_off(self) -> bool:
        """Its clock is off by more than :data:`CLOCK_OFF_S`."""
        return is_clock_off(self.clock_offset_s)


def fleet_contacts(statuses: Iterable[GatewayStatus], now: float | None = None
                   ) -> dict[str, FleetContact]:
    """Per device id, what the gateways' status files say together: a robot reconnecting may
    land on another process of the same port, so streams add up and the newest contact wins."""
    merged: dict[str, FleetContact] = {}
    for status in statuses:
        streams = status.open_streams(now)
        live = not status.stopped and not status.is_stale(now)
        for contact in status.devices:
            known = merged.get(contact.device_id, FleetContact(0, contact.last_contact))
            newer = contact.clock_offset_s is not None and (
                known.clock_offset_s is None or contact.last_contact >= known.last_contact)
            merged[contact.device_id] = FleetContact(
                known.streams + streams.get(contact.device_id, 0),
                max(known.last_contact, contact.last_contact),
                known.fps + (contact.fps if live else 0.0),
                contact.clock_offset_s if newer else known.clock_offset_s)
    return merged


def is_clock_off(offset_s: float | None) -> bool:
    """A clock offset (None: not measured) further than :data:`CLOCK_OFF_S` either way."""
    return offset_s is not None and abs(offset_s) > CLOCK_OFF_S


def clock_offset_text(offset_s: float) -> str:
    """A device clock's offset in words: ``3.2 s ahead``, ``41 min behind``, ``2.0 h ahead``."""
    size = abs(offset_s)
    if size < 90:
        amount = f"{size:.1f} s"
    elif size < 5400:
        amount = f"{size / 60:.0f} min"
    elif size < 2 * 86400:
        amount = f"{size / 3600:.1f} h"
    else:
        amount = f"{size / 86400:.0f} days"
    return f"{amount} {'ahead' if offset_s >= 0 else 'behind'}"


def write_status(directory: Path, status: GatewayStatus) -> None:
    """Replace ``directory``/status.json with ``status``; on a full disk, overwrite it in place.

    No fsync: it is rewritten soon, and a crash that loses it loses nothing a restart does not
    write again.
    """
    text = _padded(status)
    path = directory / STATUS_FILE
    partial = directory / f".{STATUS_FILE}.{os.getpid()}"
    try:
        partial.write_bytes(text)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno != errno.ENOSPC:
            raise
        try:
            _overwrite(path, text)
        except OSError as again:
            if again.errno != errno.ENOSPC or not status.devices:
                raise
            # More devices than the file has room for: the spool's state matters more.
            _overwrite(path, _padded(dataclasses.replace(status, devices=())))


def _padded(status: GatewayStatus) -> bytes:
    text = json.dumps(dataclasses.asdict(status), indent=1).encode()
    size = -(-(len(text) + 1) // PADDED_BYTES) * PADDED_BYTES
    return text + b" " * (size - len(text) - 1) + b"\n"


def _overwrite(path: Path, text: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)  # FileNotFoundError: nothing to overwrite yet
    try:
        if os.fstat(fd).st_size < len(text):
            raise OSError(errno.ENOSPC, "no room to write the status", str(path))
        os.pwrite(fd, text, 0)
    finally:
        os.close(fd)


def read_status(directory: Path) -> GatewayStatus | None:
    """The status a gateway last wrote in spool folder ``directory``; None when there is none
    yet or it cannot be read (not a status file of this version)."""
    for _ in range(_READ_ATTEMPTS):
        try:
            record = json.loads((directory / STATUS_FILE).read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # torn by an in-place write: read it again
            time.sleep(0.05)
            continue
        try:
            return _from_json(record) if record.get("version") == VERSION else None
        except (TypeError, AttributeError):
            return None
    return None


def _from_json(record: dict) -> GatewayStatus:
    served = tuple(ServedVersion(**version) for version in record.pop("serving", []))
    devices = tuple(DeviceContact(**device) for device in record.pop("devices", []))
    return GatewayStatus(**record, serving=served, devices=devices)
