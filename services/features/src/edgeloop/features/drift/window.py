"""Reading a deployment's recent observations for the drift rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from edgeloop.features.drift.signals import Window
from edgeloop.features.statistics import STAT_NAMES
from psycopg_pool import AsyncConnectionPool

_COLUMNS = (*STAT_NAMES, "sensor_mm", "prediction_mm")
_NAMES = (*_COLUMNS, "abs_error_mm")


def _micros(column: str) -> str:
    # Microseconds since the epoch as an integer: numpy takes them as they come, where a
    # datetime per row cost more than all the row's other columns together.
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


_SELECT = (
    f"SELECT {_micros('time')}, model_version, " + ", ".join(_COLUMNS)
    + f", abs(error_mm) AS abs_error_mm, observation_id::text, {_micros('ingested_at')} "
    "FROM features.observations WHERE deployment = %s AND time >= %s"
)
_WINDOW = _SELECT + " AND time < %s ORDER BY time"
_HELD = _SELECT + " ORDER BY time"
_TOP_UP = _SELECT + " AND ingested_at >= %s ORDER BY time"
CHUNK_ROWS = 5000
MODEL_DEPENDENT = ("prediction_mm", "abs_error_mm")
"""Columns that describe the model's answers, not the world: judged per serving version."""


def _naive_utc(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


@dataclass(frozen=True)
class Recent:
    """A deployment's observations since some time, in capture-time order, ready to cut
    into rule windows."""

    times: np.ndarray
    model_versions: np.ndarray
    columns: dict[str, np.ndarray]
    _answered_by: dict[str, np.ndarray] = field(default_factory=dict, compare=False,
                                                repr=False)
    """Per version, which rows it answered (every rule asks about the same version)."""

    def answered_by(self, model_version: str) -> np.ndarray:
        """Which rows ``model_version`` answered."""
        found = self._answered_by.get(model_version)
        if found is None:
            found = self._answered_by[model_version] = self.model_versions == model_version
        return found

    def window(self, since: datetime, model_version: str) -> Window:
        """The observations at or after ``since`` and since ``model_version`` began serving.

        Windows restart when the deployment's version changes: after a retrained version
        is promoted, only the world it serves counts, never the frames that made its
        predecessor drift (so no rule fires again on the world the new version knows).
        Model answers come only from ``model_version``. The world's columns are views of
        this one's (the rows are in time order, so a window is their tail), the model's
        answers copies of the rows the version answered.
        """
        start = max(_naive_utc(since), self.serving_since(model_version))
        first = int(np.searchsorted(self.times, start))
        answered = self.answered_by(model_version)[first:]
        world_times = self.times[first:]
        model_times = world_times[answered]
        columns, times = {}, {}
        for name, column in self.columns.items():
            model = name in MODEL_DEPENDENT
            columns[name] = column[first:][answered] if model else column[first:]
            times[name] = model_times if model else world_times
        return Window(columns, times, answered=answered)

    def serving_since(self, model_version: str) -> np.datetime64:
        """When ``model_version`` took over: its first observation, if another came before.

        Earlier than every observation when the version served from the start (or shares
        the deployment with other arms throughout); later than every observation when it
        has not answered yet (the windows are then empty until it does).
        """
        answered = self.answered_by(model_version)
        mine, others = self.times[answered], self.times[~answered]
        if not len(others):
            return np.datetime64("1970-01-01T00:00:00", "us")
        if not len(mine):
            return others.max() + np.timedelta64(1, "us")
        first = mine.min()
        return first if others.min() < first else np.datetime64("1970-01-01T00:00:00", "us")


INGEST_MARGIN = timedelta(seconds=5)
"""A top-up reads again the rows ingested this long before the newest it has seen: a
write's ``ingested_at`` is its transaction's start, and it is visible only once committed."""
FULL_READ_EVERY = 300.0
"""Seconds between whole reads of a held window, which bound how long a row a top-up
missed stays out of it (a write that took longer than :data:`INGEST_MARGIN` to commit)."""


@dataclass(frozen=True)
class _Rows:
    """Rows in capture-time order as arrays: times, versions, values (one contiguous row
    per name of ``_NAMES``), ids, and when each was ingested. Cutting a time range is a
    view: a held window of 120,000 rows is not copied on every evaluation."""

    times: np.ndarray
    versions: np.ndarray
    values: np.ndarray
    ids: np.ndarray
    ingested: np.ndarray

    @classmethod
    def empty(cls) -> _Rows:
        return cls(np.array([], dtype="datetime64[us]"), np.array([], dtype=object),
                   np.empty((len(_NAMES), 0)), np.array([], dtype=object),
                   np.array([], dtype="datetime64[us]"))

    def between(self, start: datetime | None = None, end: datetime | None = None) -> _Rows:
        """The rows captured in [start, end) (either open)."""
        first = np.searchsorted(self.times, _naive_utc(start)) if start else 0
        last = np.searchsorted(self.times, _naive_utc(end)) if end else len(self.times)
        return _Rows(self.times[first:last], self.versions[first:last],
                     self.values[:, first:last], self.ids[first:last],
                     self.ingested[first:last])

    def select(self, mask: np.ndarray) -> _Rows:
        return _Rows(self.times[mask], self.versions[mask], self.values[:, mask],
                     self.ids[mask], self.ingested[mask])

    def joined(self, other: _Rows) -> _Rows:
        """Both, in capture-time order (``other`` is usually all newer: no sort then)."""
        if not len(other.times):
            return self
        rows = _Rows(np.concatenate([self.times, other.times]),
                     np.concatenate([self.versions, other.versions]),
                     np.concatenate([self.values, other.values], axis=1),
                     np.concatenate([self.ids, other.ids]),
                     np.concatenate([self.ingested, other.ingested]))
        if len(self.times) and other.times.min() < self.times.max():
            rows = rows.select(np.argsort(rows.times, kind="stable"))
        return rows

    def recent(self) -> Recent:
        return Recent(self.times, self.versions,
                      {name: self.values[i] for i, name in enumerate(_NAMES)})


def _micros_array(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64).view("datetime64[us]")


async def _read(pool: AsyncConnectionPool, query: str, params: tuple[Any, ...]) -> _Rows:
    """The rows of ``query`` (a server-side cursor, CHUNK_ROWS at a time, each chunk turned
    into arrays at once: as Python tuples all at once they took four times the memory)."""
    width = len(_NAMES)
    chunks: list[tuple[np.ndarray, ...]] = []
    async with (pool.connection() as conn, conn.transaction(),
                conn.cursor(name="drift_window", binary=True) as cursor):
        await cursor.execute(query, params)
        while rows := await cursor.fetchmany(CHUNK_ROWS):
            chunks.append((
                _micros_array([row[0] for row in rows]),
                np.array([row[1] for row in rows], dtype=object),
                # None (no label, no prediction) becomes NaN
                np.array([row[2:2 + width] for row in rows], dtype=np.float64),
                np.array([row[2 + width] for row in rows], dtype=object),
                _micros_array([row[3 + width] for row in rows])))
    if not chunks:
        return _Rows.empty()
    times, versions, values, ids, ingested = (np.concatenate(parts)
                                              for parts in zip(*chunks, strict=True))
    return _Rows(times, versions, np.ascontiguousarray(values.T), ids, ingested)


async def fetch_recent(pool: AsyncConnectionPool, deployment: str, since: datetime,
                       until: datetime) -> Recent:
    """Observations of ``deployment`` captured in [since, until), read whole."""
    return (await _read(pool, _WINDOW, (deployment, since, until))).recent()


class HeldWindow:
    """One deployment's rows for the drift windows, held between evaluations and topped up
    with the rows ingested since the last.

    A fleet's 5-minute window holds 120,000 rows at 400 frames/s; read whole at every 5 s
    evaluation they cost ~1.2 CPU s each (bench/README, "Drift windows held"). A top-up
    reads what was ingested since (plus :data:`INGEST_MARGIN`, its repeats dropped by id);
    every :data:`FULL_READ_EVERY` seconds, and whenever a window would reach back before
    what is held, it is read whole.
    """

    def __init__(self, deployment: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.deployment = deployment
        self._clock = clock
        self._rows = _Rows.empty()
        self._since: datetime | None = None
        self._read_whole_at = -np.inf

    async def read(self, pool: AsyncConnectionPool, since: datetime, until: datetime) -> Recent:
        """The observations captured in [since, until), as :func:`fetch_recent` reads them."""
        if self._since is None or since < self._since \
                or self._clock() - self._read_whole_at >= FULL_READ_EVERY:
            self._rows = await _read(pool, _HELD, (self.deployment, since))
            self._read_whole_at = self._clock()
        else:
            self._rows = self._rows.between(since).joined(await self._top_up(pool, since))
        self._since = since
        return self._rows.between(end=until).recent()

    async def _top_up(self, pool: AsyncConnectionPool, since: datetime) -> _Rows:
        if not len(self._rows.ingested):
            return await _read(pool, _HELD, (self.deployment, since))
        newest = self._rows.ingested.max()
        after = newest - np.timedelta64(int(INGEST_MARGIN.total_seconds() * 1e6), "us")
        fresh = await _read(pool, _TOP_UP,
                            (self.deployment, since, after.astype(datetime).replace(tzinfo=UTC)))
        held = set(self._rows.ids[self._rows.ingested >= after])
        return fresh.select(np.array([i not in held for i in fresh.ids], dtype=bool))
