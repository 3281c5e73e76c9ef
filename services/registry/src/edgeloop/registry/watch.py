"""In-process fan-out of deployment changes to WatchDeployments streams.

Each watcher has a bounded queue. A watcher too slow to keep up is not allowed to hold
memory: its queue is dropped and it receives a fresh snapshot (``snapshot=true``)
instead, which gateways treat as "replace everything you know".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from edgeloop.contracts.registry.v1 import registry_service_pb2

log = logging.getLogger(__name__)
Message = registry_service_pb2.WatchDeploymentsResponse
QUEUE_SIZE = 256


class Subscription:
    """One watcher's queue of changes."""

    def __init__(self, name: str, snapshot: Callable[[], Message], size: int) -> None:
        self.name = name
        self._snapshot = snapshot
        self._queue: asyncio.Queue[Message] = asyncio.Queue(size)
        self._resync = False

    def offer(self, message: Message) -> None:
        """Queue ``message``; on overflow, drop the backlog and ask for a resync."""
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("watcher too slow; sending it a fresh snapshot",
                        extra={"watcher": self.name})
            while not self._queue.empty():
                self._queue.get_nowait()
            self._resync = True
            self._queue.put_nowait(Message())  # wakes the reader

    async def next(self) -> Message:
        """The next change, or a fresh snapshot after an overflow."""
        message = await self._queue.get()
        if self._resync:
            self._resync = False
            while not self._queue.empty():
                self._queue.get_nowait()
            return self._snapshot()
        return message


class Watchers:
    """The set of open watches; ``broadcast`` reaches every one."""

    def __init__(self, snapshot: Callable[[], Message], queue_size: int = QUEUE_SIZE) -> None:
        self._snapshot = snapshot
        self._queue_size = queue_size
        self._subscriptions: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, name: str) -> tuple[Subscription, Message]:
        """Open a watch: its subscription and the snapshot it starts from.

        Both are taken without an ``await`` in between, so no change falls in a gap.
        """
        subscription = Subscription(name, self._snapshot, self._queue_size)
        self._subscriptions.add(subscription)
        return subscription, self._snapshot()

    def unsubscribe(self, subscription: Subscription) -> None:
        """Close a watch."""
        self._subscriptions.discard(subscription)

    def broadcast(self, message: Message) -> None:
        """Send ``message`` to every open watch."""
        for subscription in list(self._subscriptions):
            subscription.offer(message)
