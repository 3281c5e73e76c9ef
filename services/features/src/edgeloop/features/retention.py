"""The retention's pass, at start and hourly: rows past ``EDGELOOP_RETENTION_DAYS``, then the
images of the capture days whose rows have gone.

On TimescaleDB its retention policy drops the rows (daily, whole chunks); on plain
PostgreSQL :mod:`~edgeloop.features.row_retention` deletes them here. Images go two days
after their rows (:mod:`~edgeloop.features.image_retention`), so a row never outlives its
image. Without a retention (0) nothing runs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edgeloop.features.image_retention import delete_expired
from edgeloop.features.row_retention import delete_expired_rows
from edgeloop.platform.errors import EdgeloopError
from edgeloop.platform.objectstore import ObjectStore
from psycopg import Error as DatabaseError
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

INTERVAL_S = 3600.0
"""How often a pass runs."""


@dataclass
class RetentionPass:
    """What one pass deleted: rows per table (plain PostgreSQL), image packs per day folder."""

    rows: dict[str, int] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)


class Retention:
    """Deletes what is past the retention at start and every :data:`INTERVAL_S` after.

    ``rows`` is the pool to delete rows through (plain PostgreSQL), None where TimescaleDB's
    policy drops them.
    """

    def __init__(self, store: ObjectStore, retention_days: int,
                 rows: AsyncConnectionPool | None = None,
                 interval_s: float = INTERVAL_S) -> None:
        self.store = store
        self.retention_days = retention_days
        self.rows = rows
        self.interval_s = interval_s
        self.passes = 0
        """Passes :meth:`run` has ended (a test waits out the one at start)."""

    async def run(self) -> None:
        """Until cancelled; a database or store that fails is logged and tried again next time."""
        while True:
            try:
                await self.sweep_once()
            except Exception:  # a bug must not end the task unseen until the service stops
                log.exception("retention: the pass failed; trying again next time")
            self.passes += 1
            await asyncio.sleep(self.interval_s)

    async def sweep_once(self) -> RetentionPass:
        """One pass. Images are deleted only after the rows' step succeeded (or was not ours)."""
        done = RetentionPass()
        now = datetime.now(UTC)
        if self.rows is not None:
            try:
                done.rows = await delete_expired_rows(self.rows, self.retention_days, now)
            except DatabaseError as exc:
                log.warning("expired rows not deleted; trying again in %.0f s: %s",
                            self.interval_s, exc)
                return done
            for table, count in done.rows.items():
                log.info("expired rows deleted", extra={
                    "table": table, "rows": count, "retention_days": self.retention_days})
        try:
            done.images = await asyncio.to_thread(delete_expired, self.store,
                                                  self.retention_days, now.date())
        except (EdgeloopError, OSError) as exc:
            log.warning("expired images not deleted; trying again in %.0f s: %s",
                        self.interval_s, exc, extra={"object_store": self.store.describe()})
            return done
        for folder, objects in done.images.items():
            log.info("expired images deleted", extra={
                "folder": folder, "objects": objects, "retention_days": self.retention_days})
        return done
