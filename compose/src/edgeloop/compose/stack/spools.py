"""The gateways' spools as `edgeloop status` shows them, from each one's ``status.json``.

Each gateway process rewrites ``status.json`` in its spool folder every few seconds
(:mod:`edgeloop.platform.gateway_status`): the bytes waiting for features, whether live frames
are answered without a record, whether features confirms what is forwarded, the versions it
serves and their runtimes. This module finds the stack's spool folders and says in a line or
a few what an operator should know.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edgeloop.compose.stack.topology import Topology
from edgeloop.platform.gateway_status import (
    STATUS_FILE,
    DeviceContact,
    GatewayStatus,
    clock_offset_text,
    read_status,
)


@dataclass(frozen=True)
class SpoolReport:
    """One gateway process's spool: its folder and the last status it wrote (None: none yet)."""

    part: str
    folder: Path
    status: GatewayStatus | None

    def as_json(self, running: bool) -> dict[str, Any]:
        """The report for `edgeloop status --output json`: the status file as written, its
        recording state in one word, and whether it needs an operator (exit code 2)."""
        state = "no status" if self.status is None else self.status.recording_state()
        return {"part": self.part, "folder": str(self.folder), "recording_state": state,
                "in_trouble": self.in_trouble(running),
                "status": dataclasses.asdict(self.status) if self.status else None}

    def lines(self, running: bool, now: float | None = None) -> list[str]:
        """What an operator reads: the backlog first, then each trouble on its own line."""
        now = time.time() if now is None else now
        s = self.status
        if s is None:
            return [f"{self.part} spool: no status yet ({self.folder / STATUS_FILE})"]
        head = (f"{self.part} spool: {_size(s.backlog_bytes)} of {_size(s.max_bytes)} "
                f"waiting for features ({100 * s.fill:.0f} %)")
        if s.forwarded_at is not None:
            head += f"; last forwarded {_ago(now, s.forwarded_at)}"
        if s.stopped or not running:
            head += "; gateway stopped"
            if s.backlog_bytes:
                head += f" (status of {_clock(s.written_at)}): kept for its next start"
        elif s.is_stale(now):
            head += f" (status {s.age_s(now):.0f} s old: the gateway has not rewritten it)"
        lines = [head]
        if s.serving and not s.stopped and running:
            lines.append("  serving " + ", ".join(
                f"{v.model} v{v.version} ({v.runtime})" for v in s.serving))
        if not s.stopped and running:
            lines.append(f"  {_robots(s, now)}")
        if off := [d for d in s.devices if d.clock_off]:
            lines.append(f"  {_clocks_off(off)}")
        if s.not_recorded_since is not None:
            lines.append(f"  answering live frames WITHOUT recording them since "
                         f"{_clock(s.not_recorded_since)} ({s.answered_not_recorded:,} "
                         "since start): the spool is full; robots send labelled ones again")
        if s.disk_refused:
            lines.append(f"  the disk refused the last write: free space under {self.folder}")
        if s.forward_failing_since is not None:
            lines.append(f"  features has not taken a batch since "
                         f"{_clock(s.forward_failing_since)}: they wait in the spool")
        return lines

    def in_trouble(self, running: bool, now: float | None = None) -> bool:
        """A running gateway whose recording needs an operator: live frames answered without a
        record, a full disk, features failing, or a status file it no longer rewrites."""
        if not running:
            return False
        if self.status is None:
            return True
        return self.status.recording_state(now) not in {"recording", "stopped"}


def _robots(status: GatewayStatus, now: float) -> str:
    streaming = status.open_streams(now)
    streams = sum(streaming.values())
    fps = sum(d.fps for d in status.devices if d.device_id in streaming)
    line = (f"{len(streaming)} robot{'s' if len(streaming) != 1 else ''} streaming"
            + (f" ({streams} streams)" if streams != len(streaming) else "")
            + (f", {fps:,.0f} frames/s" if fps else ""))
    gone = [d for d in status.devices if d.device_id not in streaming]
    if gone:
        newest = max(d.last_contact for d in gone)
        line += f"; {len(gone)} more seen since it started (the last {_ago(now, newest)})"
    return line


def _clocks_off(devices: list[DeviceContact], named: int = 3) -> str:
    """The devices whose clock is off, the furthest first (``named`` of them by name)."""
    devices = sorted(devices, key=lambda d: -abs(d.clock_offset_s or 0.0))
    names = ", ".join(f"{d.device_id} {clock_offset_text(d.clock_offset_s or 0.0)}"
                      for d in devices[:named])
    more = f" and {len(devices) - named} more" if len(devices) > named else ""
    return (f"clock off on {len(devices)} robot{'s' if len(devices) != 1 else ''}: "
            f"{names}{more} (their frames' times are off by as much: set their clocks)")


def read_spools(topology: Topology, parts: list[str]) -> list[SpoolReport]:
    """The spool report of each gateway process in ``parts`` and of every other spool folder
    in the state folder (a process `up` no longer starts keeps its spool for a later one)."""
    found = {path.name.replace("spool", "gateway") for path in topology.state_dir.glob("spool*")
             if path.is_dir() and re.fullmatch(r"spool(-\d+)?", path.name)}
    names = [*parts, *sorted(found - set(parts), key=_part_order)]
    return [SpoolReport(name, topology.spool_dir(name), read_status(topology.spool_dir(name)))
            for name in names]


def _part_order(part: str) -> int:
    _, _, number = part.partition("-")
    return int(number) if number.isdigit() else 1


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def _ago(now: float, then: float) -> str:
    seconds = max(0.0, now - then)
    return f"{seconds:.1f} s ago" if seconds < 60 else f"at {_clock(then)}"


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%H:%M:%S")
