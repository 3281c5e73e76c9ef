"""GetWindowStats: one deployment's statistics over a time window.

Three queries over the window's rows: a summary (count, mean, min, max, population
stddev of every statistic), fixed-width histograms between each statistic's min and
max, and rollup buckets. Buckets are whole buckets that overlap the window (as a
dashboard draws them), so their counts may include observations just outside it.

On TimescaleDB, buckets whose width is a whole number of 5-minute buckets come from the
continuous aggregate ``observations_5m`` (wider ones re-bucketed from it, means weighted by
the counts behind them): the aggregate keeps its rows after the retention policy drops raw
chunks, so buckets reach past the raw retention while the summary and histograms cover
the raw rows still kept. Otherwise the rollup SELECT (``rollup.py``) runs on the raw rows
with a time-range WHERE (on plain PostgreSQL that is what the view computes, but the view
has no time predicate for the planner to use).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as pb
from edgeloop.features.rollup import (
    MEAN_PREFIX,
    ORIGIN,
    ROLLUP_SECONDS,
    ROLLUP_VIEW,
    mean_columns,
    rollup_select,
)
from edgeloop.features.statistics import STAT_NAMES
from edgeloop.platform.errors import InvalidArgument
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

DEFAULT_WINDOW = timedelta(minutes=5)
DEFAULT_BINS, MAX_BINS = 20, 1000
MAX_BUCKET_SECONDS = 7 * 86400
SUMMARY: tuple[tuple[str, str], ...] = (
    *((name, f"{name}::float8") for name in STAT_NAMES),
    ("prediction_mm", "prediction_mm::float8"), ("sensor_mm", "sensor_mm::float8"),
    ("error_mm", "error_mm::float8"), ("abs_error_mm", "abs(error_mm)::float8"),
    ("latency_ms", "latency_ms::float8"),
)
"""(statistic name, SQL expression) of every summarised statistic."""
_WINDOW = "deployment = %(deployment)s AND time >= %(start)s AND time < %(end)s"


@dataclass(frozen=True)
class Window:
    """A validated request: deployment, [start, end), bins and bucket width."""

    deployment: str
    start: datetime
    end: datetime
    bins: int
    bucket_seconds: int

    def bucket_range(self) -> tuple[datetime, datetime]:
        """Start of the first and end of the last bucket that overlap the window."""
        origin = datetime.fromisoformat(ORIGIN)
        width = timedelta(seconds=self.bucket_seconds)
        first = origin + ((self.start - origin) // width) * width
        last_end = origin - ((origin - self.end) // width) * width  # ceiling
        return first, last_end

    def params(self) -> dict[str, Any]:
        """The query parameters of the window."""
        first, bucket_end = self.bucket_range()
        return {"deployment": self.deployment, "start": self.start, "end": self.end,
                "bins": self.bins, "width": timedelta(seconds=self.bucket_seconds),
                "first": first, "bucket_end": bucket_end}


def parse_window(request: pb.GetWindowStatsRequest, now: datetime) -> Window:
    """The window of ``request``: end defaults to now, start to end minus 5 minutes."""
    if not request.deployment:
        raise InvalidArgument("deployment", "required")
    end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else now
    start = (request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time")
             else end - DEFAULT_WINDOW)
    if start >= end:
        raise InvalidArgument("start_time", "must be before end_time")
    bins = request.histogram_bins or DEFAULT_BINS
    if bins > MAX_BINS:
        raise InvalidArgument("histogram_bins", f"at most {MAX_BINS}")
    bucket_seconds = request.bucket_seconds or ROLLUP_SECONDS
    if bucket_seconds > MAX_BUCKET_SECONDS:
        raise InvalidArgument("bucket_seconds", f"at most {MAX_BUCKET_SECONDS}")
    return Window(request.deployment, start, end, bins, bucket_seconds)


def _summary_sql() -> sql.Composed:
    parts = [sql.SQL("count(*), count(sensor_mm)")]
    for _, expr in SUMMARY:
        parts.append(sql.SQL("count({e}), avg({e}), min({e}), max({e}), stddev_pop({e})")
                     .format(e=sql.SQL(expr)))
    return sql.SQL("SELECT {} FROM features.observations WHERE " + _WINDOW).format(
        sql.SQL(", ").join(parts))


def _histogram_sql() -> sql.Composed:
    values = sql.SQL(", ").join(sql.SQL("({}, {})").format(sql.Literal(name), sql.SQL(expr))
                                for name, expr in SUMMARY)
    return sql.SQL(
        "WITH bounds(name, lo, hi) AS (SELECT * FROM unnest(%(names)s::text[], "
        "%(los)s::float8[], %(his)s::float8[])) "
        "SELECT v.name, least(width_bucket(v.value, b.lo, b.hi, %(bins)s), %(bins)s), count(*) "
        "FROM features.observations o CROSS JOIN LATERAL (VALUES {values}) AS v(name, value) "
        "JOIN bounds b ON b.name = v.name "
        "WHERE v.value IS NOT NULL AND " + _WINDOW + " "
        "GROUP BY 1, 2").format(values=values)


MEAN_WEIGHTS = {"avg_prediction_mm": "predicted_count", "avg_sensor_mm": "labelled_count",
                "avg_error_mm": "labelled_count", "avg_abs_error_mm": "labelled_count"}
"""The rollup count behind each mean that is not over every observation (the image
statistics and latency are never NULL). An error exists where a label and a prediction
do: weighting errors by the labelled count is exact while labelled frames carry a
prediction, as every frame through the gateway does."""


def _rebucketed_view_sql() -> sql.SQL:
    """Buckets of %(width)s (a multiple of 5 minutes) from the 5-minute aggregate."""
    means = ", ".join(
        f"sum({c} * {MEAN_WEIGHTS.get(c, 'observation_count')}) / "
        f"nullif(sum({MEAN_WEIGHTS.get(c, 'observation_count')}) FILTER (WHERE {c} IS NOT NULL), 0)"
        f" AS {c}" for c in mean_columns())
    return sql.SQL(
        "SELECT time_bucket(%(width)s, bucket) AS bucket, "
        "sum(observation_count)::bigint AS observation_count, " + means + " "
        f"FROM {ROLLUP_VIEW} WHERE deployment = %(deployment)s "
        "AND bucket >= %(first)s AND bucket < %(bucket_end)s GROUP BY 1 ORDER BY 1")


def _bucket_sql(from_view: bool, bucket_seconds: int = ROLLUP_SECONDS) -> sql.SQL:
    if from_view and bucket_seconds != ROLLUP_SECONDS:
        return _rebucketed_view_sql()
    if from_view:
        return sql.SQL(f"SELECT * FROM {ROLLUP_VIEW} WHERE deployment = %(deployment)s "
                       "AND bucket >= %(first)s AND bucket < %(end)s ORDER BY bucket")
    bucket = f"date_bin(%(width)s, time, TIMESTAMPTZ '{ORIGIN}')"
    where = "deployment = %(deployment)s AND time >= %(first)s AND time < %(bucket_end)s"
    return sql.SQL("SELECT * FROM (" + rollup_select(bucket, where) + ") AS r ORDER BY bucket")


def _edges(lo: float, hi: float, bins: int) -> np.ndarray:
    # All values equal: one unit wide, so width_bucket has a range and bin 1 holds them.
    return np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)


def _summaries(row: tuple[Any, ...], bins: int) -> list[pb.StatSummary]:
    summaries = []
    for index, (name, _) in enumerate(SUMMARY):
        count, mean, lo, hi, std = row[2 + 5 * index: 7 + 5 * index]
        summary = pb.StatSummary(name=name, count=count)
        if count:
            summary.mean, summary.min, summary.max, summary.stddev = mean, lo, hi, std
            summary.histogram.edges.extend(_edges(lo, hi, bins).tolist())
            summary.histogram.counts.extend([0] * bins)
        summaries.append(summary)
    return summaries


def _bounds(summaries: list[pb.StatSummary]) -> dict[str, list[Any]]:
    present = [s for s in summaries if s.count]
    return {"names": [s.name for s in present],
            "los": [s.histogram.edges[0] for s in present],
            "his": [s.histogram.edges[-1] for s in present]}


def _bucket(row: dict[str, Any]) -> pb.Bucket:
    bucket = pb.Bucket(count=row["observation_count"])
    bucket.start.FromDatetime(row["bucket"])
    for column, value in row.items():
        if column.startswith(MEAN_PREFIX) and value is not None:
            bucket.means[column.removeprefix(MEAN_PREFIX)] = float(value)
    return bucket


async def window_stats(pool: AsyncConnectionPool, request: pb.GetWindowStatsRequest,
                       timescale: bool, now: datetime) -> pb.GetWindowStatsResponse:
    """The statistics of ``request``'s window (see the module docstring)."""
    window = parse_window(request, now)
    params = window.params()
    response = pb.GetWindowStatsResponse(deployment=window.deployment)
    response.start_time.FromDatetime(window.start)
    response.end_time.FromDatetime(window.end)
    async with pool.connection() as conn:
        row = await (await conn.execute(_summary_sql(), params)).fetchone()
        assert row is not None  # an aggregate without GROUP BY always returns one row
        response.observation_count, response.labelled_count = row[0], row[1]
        summaries = _summaries(row, window.bins)
        if response.observation_count:
            by_name = {s.name: s for s in summaries}
            cursor = await conn.execute(_histogram_sql(), {**params, **_bounds(summaries)})
            for name, bin_number, count in await cursor.fetchall():
                by_name[name].histogram.counts[bin_number - 1] = count
        response.stats.extend(summaries)
        from_view = timescale and window.bucket_seconds % ROLLUP_SECONDS == 0
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(_bucket_sql(from_view, window.bucket_seconds), params)
            response.buckets.extend(_bucket(r) for r in await cursor.fetchall())
    return response
