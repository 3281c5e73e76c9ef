"""Images leave with their rows: the capture days past the retention go from the object store.

With ``EDGELOOP_RETENTION_DAYS`` the raw rows older than that many days go (TimescaleDB's
retention policy, :mod:`~edgeloop.features.schema`; on plain PostgreSQL
:mod:`~edgeloop.features.row_retention`), but the rows' images stayed for good,
and they are most of what a fleet stores: 100 robots at 4 fps write ~35 million frames a
day, ~15 KiB each. Images are filed by deployment and capture day
(``features/<deployment>/<yyyy-mm-dd>/``, :mod:`~edgeloop.features.images`), so a day goes
as one folder. A day's folder is deleted once the day is :data:`MARGIN_DAYS` older than the
retention: the policy drops a day's chunk only once the whole day is older than the
retention, and its job runs once a day, so the rows always go first (plain PostgreSQL's
rows go at the retention itself, earlier still). Without retention (0) nothing is deleted;
:mod:`~edgeloop.features.retention` runs it.
"""

from __future__ import annotations

from datetime import date, timedelta

from edgeloop.platform.objectstore import ObjectStore

IMAGES = "features/"
"""Where the features service files images (one folder per deployment, then per day)."""
MARGIN_DAYS = 2
"""Days a capture day's images stay past the retention: one for the day's chunk to be
wholly older than the retention, one for the policy's daily job to have dropped it."""


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
