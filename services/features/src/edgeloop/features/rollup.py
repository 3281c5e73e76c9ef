"""The 5-minute rollup's SQL: one SELECT list for both database branches.

``sql/rollup_select.sql`` holds the SELECT; the TimescaleDB branch buckets with
``time_bucket`` (a continuous aggregate), plain PostgreSQL with ``date_bin`` on the
same origin (a view), and :mod:`edgeloop.features.window_stats` reuses it for other
bucket widths. Columns named ``avg_<statistic>`` are the buckets' means.
"""

from __future__ import annotations

import re
from importlib import resources

ROLLUP_VIEW = "features.observations_5m"
ROLLUP_SECONDS = 300
ORIGIN = "2000-01-03 00:00:00+00"
"""time_bucket's default origin (a Monday); date_bin uses it too so the branches agree."""
TIME_BUCKET = "time_bucket(INTERVAL '5 minutes', time)"
DATE_BIN = f"date_bin(INTERVAL '5 minutes', time, TIMESTAMPTZ '{ORIGIN}')"
MEAN_PREFIX = "avg_"


def sql_file(name: str) -> str:
    """The text of ``sql/<name>`` shipped with the package."""
    return resources.files("edgeloop.features").joinpath("sql", name).read_text(encoding="utf-8")


def rollup_select(bucket: str, where: str = "") -> str:
    """The rollup SELECT with ``bucket`` as the bucket expression and an optional WHERE."""
    body = "\n".join(line for line in sql_file("rollup_select.sql").splitlines()
                     if not line.startswith("--"))
    return body.format(bucket=bucket, where=f"\nWHERE {where}" if where else "").strip()


def mean_columns() -> list[str]:
    """The rollup's ``avg_<statistic>`` column names, in SELECT order."""
    return re.findall(rf"\bAS ({MEAN_PREFIX}\w+)", sql_file("rollup_select.sql"))
