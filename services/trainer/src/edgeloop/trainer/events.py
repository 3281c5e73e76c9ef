"""Sweep progress events: stored in PostgreSQL, pushed to watchers as they happen.

:meth:`EventBus.watch` is WatchSweep: it yields the stored past events, then the live
ones as they are stored, until the sweep reaches a final state. Events are always
read back from the table (by sequence number), so a watcher that joins late or
reconnects misses nothing and sees nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.trainer.store import TERMINAL, SweepStore
from google.protobuf.timestamp_pb2 import Timestamp

POLL_S = 2.0
"""Fallback re-check period (a notification could come from another trainer process)."""


def make_event(
    sweep: sweep_pb2.Sweep,
    kind: int,
    message: str,
    trial_id: str = "",
    epoch: int = 0,
    metrics: dict[str, float] | None = None,
    at: Timestamp | None = None,
) -> sweep_pb2.SweepEvent:
    """A progress event of ``sweep`` stamped ``at`` (default now), with the sweep's state."""
    now = Timestamp()
    if at is None:
        now.GetCurrentTime()
    else:
        now.CopyFrom(at)
    return sweep_pb2.SweepEvent(
        sweep_id=sweep.sweep_id,
        type=kind,
        time=now,
        trial_id=trial_id,
        epoch=epoch,
        metrics=metrics or {},
        message=message,
        state=sweep.state,
    )


class EventBus:
    """Stores events and wakes the watchers of their sweep."""

    def __init__(self, store: SweepStore) -> None:
        self.store = store
        self._changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.loop: asyncio.AbstractEventLoop | None = None

    async def emit(self, event: sweep_pb2.SweepEvent) -> None:
        """Store ``event`` and wake its sweep's watchers."""
        await self.store.add_event(event)
        self.notify(event.sweep_id)

    def notify(self, sweep_id: str) -> None:
        """Wake the watchers of ``sweep_id`` (new event or new state)."""
        self._changed[sweep_id].set()

    def emit_threadsafe(self, event: sweep_pb2.SweepEvent) -> Any:
        """Emit from another thread (the Ray Tune driver thread)."""
        assert self.loop is not None, "EventBus.loop is set when the service starts"
        return asyncio.run_coroutine_threadsafe(self.emit(event), self.loop)

    async def watch(self, sweep_id: str) -> AsyncIterator[sweep_pb2.SweepEvent]:
        """Past events, then live ones, until the sweep has ended and all are delivered.

        The last event always carries the sweep's final state.
        """
        await self.store.get(sweep_id)  # NotFound for an unknown id, before streaming
        last = 0
        final_sent = False
        while True:
            changed = self._changed[sweep_id]
            changed.clear()
            for seq, event in await self.store.events_after(sweep_id, last):
                last, final_sent = seq, event.state in TERMINAL
                yield event
            sweep = await self.store.get(sweep_id)
            if sweep.state in TERMINAL:
                for seq, event in await self.store.events_after(sweep_id, last):
                    last, final_sent = seq, event.state in TERMINAL
                    yield event
                if not final_sent:
                    # The state was saved but its event is not stored yet (or was lost):
                    # the stream's last message must still carry the final state, or a
                    # watcher that trusts it (a script's exit code) reads a running sweep.
                    yield make_event(sweep, sweep_pb2.SWEEP_EVENT_TYPE_STATE_CHANGED,
                                     f"final state {sweep_pb2.SweepState.Name(sweep.state)}")
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL_S)
