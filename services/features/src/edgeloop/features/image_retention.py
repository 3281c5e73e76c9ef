"""Images leave with their rows: the capture days past the retention go from the object store.

With ``EDGELOOP_RETENTION_DAYS`` TimescaleDB drops raw rows older than that many days (its
retention policy, :mod:`~edgeloop.features.schema`), but the rows' images stayed for good,
and they are most of what a fleet stores: 100 robots at 4 fps write ~35 million frames a
day, ~15 KiB each. Images are filed by deployment and capture day
(``features/<deployment>/<yyyy-mm-dd>/``, :mod:`~edgeloop.features.images`), so a day goes
as one folder. A day's folder is deleted once the day is :data:`MARGIN_DAYS` older than the
retention: the policy drops a day's chunk only once the whole day is older than the
retention, and its job runs once a day, so the rows always go first. Without retention
(0, and always on plain PostgreSQL, which has no policy) nothing is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta

from edgeloop.platform.errors import EdgeloopError
from edgeloop.platform.objectstore import ObjectStore

log = logging.getLogger(__name__)

IMAGES = "features/"
"""Where the features service files images (one folder per deployment, then per day)."""
MARGIN_DAYS = 2
"""Days a capture day's images stay past the retention: one for the day's chunk to be
wholly older than the retention, one for the policy's daily job to have dropped it."""
INTERVAL_S = 3600.0
"""How often the expired days are looked for."""


def expired_days(store: ObjectStore, retention_days: int, today: date) -> list[str]:
    """The day folders (``features/<deployment>/<day>/``) whose rows the retention dropped."""
    oldest_kept = today - timedelta(days=retention_days + MARGIN_DAYS)
    expired = []
    for deployment in store.folders(IMAGES):
        for folder in store.folders(deployment):
            try:
                day = date.fromisoformat(folder.rstrip("/").rpartition("/")[2])
            except ValueError:
                continue  # not a day of images: not ours to judge
            if day < oldest_kept:
                expired.append(folder)
    return expired


def delete_expired(store: ObjectStore, retention_days: int, today: date) -> dict[str, int]:
    """Delete the expired day folders; the objects (image packs) deleted per folder."""
    return {folder: store.delete_prefix(folder)
            for folder in expired_days(store, retention_days, today)}


class ImageRetention:
    """Deletes expired image days at start and every :data:`INTERVAL_S` after."""

    def __init__(self, store: ObjectStore, retention_days: int,
                 interval_s: float = INTERVAL_S) -> None:
        self.store = store
        self.retention_days = retention_days
        self.interval_s = interval_s

    async def run(self) -> None:
        """Until cancelled; a store that fails is logged and tried again next time."""
        while True:
            try:
                await self.sweep_once()
            except Exception:  # a bug must not end the task unseen until the service stops
                log.exception("expired images: the pass failed; trying again next time")
            await asyncio.sleep(self.interval_s)

    async def sweep_once(self) -> dict[str, int]:
        """One pass: the folders deleted and their images (none when the store failed)."""
        today = datetime.now(UTC).date()
        try:
            deleted = await asyncio.to_thread(delete_expired, self.store,
                                              self.retention_days, today)
        except (EdgeloopError, OSError) as exc:
            log.warning("expired images not deleted; trying again in %.0f s: %s",
                        self.interval_s, exc, extra={"object_store": self.store.describe()})
            return {}
        for folder, objects in deleted.items():
            log.info("expired images deleted", extra={
                "folder": folder, "objects": objects, "retention_days": self.retention_days})
        return deleted
