"""The gateways' spools on the fleet page, from the status file each gateway writes.

Each gateway process rewrites ``status.json`` in its spool folder every few seconds
(:mod:`edgeloop.platform.gateway_status`). The console reads the folders named in
``EDGELOOP_SPOOL_DIRS`` (`edgeloop up` names every gateway's): an operator sees on the
fleet page when the recording falls behind, before robots' frames go unrecorded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from edgeloop.platform.gateway_status import GatewayStatus, read_status

_PILLS = {"recording": "ok", "features failing": "pending", "stale": "pending",
          "not recording": "failed", "disk full": "failed"}


@dataclass(frozen=True)
class GatewaySpool:
    """One spool folder and what its gateway last wrote there (None: nothing yet)."""

    folder: str
    status: GatewayStatus | None
    read_at: float

    @property
    def state(self) -> str:
        """One word for the row's pill: the worst of what the status says."""
        return "no status" if self.status is None else self.status.recording_state(self.read_at)

    @property
    def pill(self) -> str:
        """The stylesheet's class for the state: green, amber (behind) or red (losing records)."""
        return _PILLS.get(self.state, "")


async def read_gateway_spools(folders: list[str]) -> list[GatewaySpool]:
    """The status of every configured spool folder, read off the event loop."""
    def read_all() -> list[GatewaySpool]:
        now = time.time()
        return [GatewaySpool(folder, read_status(Path(folder)), now) for folder in folders]
    return await asyncio.to_thread(read_all) if folders else []
