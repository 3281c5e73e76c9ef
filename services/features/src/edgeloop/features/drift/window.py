"""Reading a deployment's recent observations for the drift rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from edgeloop.features.drift.signals import Window
from edgeloop.features.statistics import STAT_NAMES
from psycopg_pool import AsyncConnectionPool

_COLUMNS = (*STAT_NAMES, "sensor_mm", "prediction_mm")
_QUERY = (
    "SELECT time, model_version, " + ", ".join(_COLUMNS) + ", abs(error_mm) AS abs_error_mm "
    "FROM features.observations WHERE deployment = %s AND time >= %s AND time < %s ORDER BY time"
)
CHUNK_ROWS = 5000
MODEL_DEPENDENT = ("prediction_mm", "abs_error_mm")
"""Columns that describe the model's answers, not the world: judged per serving version."""


def _naive_utc(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


@dataclass(frozen=True)
class Recent:
    """A deployment's observations since some time, ready to cut into rule windows."""

    times: np.ndarray
    model_versions: np.ndarray
    columns: dict[str, np.ndarray]

    def window(self, since: datetime, model_version: str) -> Window:
        """The observations at or after ``since`` and since ``model_version`` began serving.

        Windows restart when the deployment's version changes: after a retrained version
        is promoted, only the world it serves counts, never the frames that made its
        predecessor drift (so no rule fires again on the world the new version knows).
        Model answers come only from ``model_version``.
        """
        start = max(_naive_utc(since), self.serving_since(model_version))
        mask = self.times >= start
        same_model = mask & (self.model_versions == model_version)
        return Window({name: column[same_model if name in MODEL_DEPENDENT else mask]
                       for name, column in self.columns.items()},
                      {name: self.times[same_model if name in MODEL_DEPENDENT else mask]
                       for name in self.columns},
                      answered=same_model[mask])


    def serving_since(self, model_version: str) -> np.datetime64:
        """When ``model_version`` took over: its first observation, if another came before.

        Earlier than every observation when the version served from the start (or shares
        the deployment with other arms throughout); later than every observation when it
        has not answered yet (the windows are then empty until it does).
        """
        mine = self.times[self.model_versions == model_version]
        others = self.times[self.model_versions != model_version]
        if not len(others):
            return np.datetime64("1970-01-01T00:00:00", "us")
        if not len(mine):
            return others.max() + np.timedelta64(1, "us")
        first = mine.min()
        return first if others.min() < first else np.datetime64("1970-01-01T00:00:00", "us")


async def fetch_recent(pool: AsyncConnectionPool, deployment: str, since: datetime,
                       until: datetime) -> Recent:
    """Observations of ``deployment`` captured in [since, until).

    Read from a server-side cursor, CHUNK_ROWS at a time, each chunk turned into arrays at
    once: a fleet's 5-minute window holds 120,000 rows at 400 frames/s, and as Python
    tuples all at once they took about four times the memory of the arrays.
    """
    names = (*_COLUMNS, "abs_error_mm")
    times: list[np.ndarray] = []
    versions: list[np.ndarray] = []
    values: list[np.ndarray] = []
    async with (pool.connection() as conn, conn.transaction(),
                conn.cursor(name="drift_window") as cursor):
        await cursor.execute(_QUERY, (deployment, since, until))
        while rows := await cursor.fetchmany(CHUNK_ROWS):
            times.append(np.array([_naive_utc(row[0]) for row in rows], dtype="datetime64[us]"))
            versions.append(np.array([row[1] for row in rows], dtype=object))
            # None (no label, no prediction) becomes NaN
            values.append(np.array([row[2:] for row in rows], dtype=np.float64))
    table = np.concatenate(values) if values else np.empty((0, len(names)))
    return Recent(np.concatenate(times) if times else np.array([], dtype="datetime64[us]"),
                  np.concatenate(versions) if versions else np.array([], dtype=object),
                  {name: np.ascontiguousarray(table[:, i]) for i, name in enumerate(names)})
