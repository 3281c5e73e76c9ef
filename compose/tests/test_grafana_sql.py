"""Grafana as code, checked against the real schema.

Grafana itself cannot be installed on our machines, so this test does what Grafana
would do with the provisioned files, short of drawing: it expands Grafana's PostgreSQL
macros and template variables in every dashboard panel query, annotation query,
template-variable query and alert rule query, and runs the result on a real PostgreSQL
database whose schema the features service (``edgeloop.features.schema.ensure_schema``)
and the trainer (its migrations) created exactly as they do at start, after the
Grafana read-only role's init script — as that role. Each query must execute, return
rows for the observations inserted here, and return the columns its panel needs.

Every database test runs on both branches of the features schema (``db_branches``): on
TimescaleDB ``features.observations_5m`` is the real-time continuous aggregate, on plain
PostgreSQL a ``date_bin`` view with the same columns (both come from
``sql/rollup_select.sql``); the TimescaleDB run is skipped where it is not installed.

Macros the expander supports (anything else starting with ``$`` fails the test):
``$__timeFilter(col)``, ``$__timeFrom()``, ``$__timeTo()``, ``$__unixEpochFilter(col)``,
``$__timeGroup(col, interval)``, ``$__timeGroupAlias(col, interval)`` (interval given as
``$__interval``, ``'5m'`` or ``5m``), ``$__interval``, ``$__interval_ms``, and template
variables ``$name``, ``${name}``, ``${name:sqlstring}``, ``${name:raw}``. Their
expansions follow Grafana's PostgreSQL data source (e.g. ``$__timeFilter(col)`` becomes
``col BETWEEN '<from>' AND '<to>'``; ``$__timeGroup`` floors epoch seconds).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import yaml
from edgeloop.features.drift import load_rules
from edgeloop.features.schema import Policies, ensure_schema
from edgeloop.platform.diskspace import LOW_FRACTION
from edgeloop.platform.migrations import apply_migrations, load_migrations
from edgeloop.platform.pgcluster import PostgresCluster
from edgeloop.testing.fixtures import cluster_of

GRAFANA = Path(__file__).resolve().parents[1] / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTING = GRAFANA / "provisioning" / "alerting"
ALERT_RULES = ALERTING / "rules.yaml"
GATEWAY_RULES = ALERTING / "gateways.yaml"
DATASOURCE_UID = "edgeloop-timescaledb"
NOW = datetime.now(UTC).replace(microsecond=0)
DISK = 500 * 10**9
"""The gateways' spool filesystem in the samples: 500 GB."""
TIME_FROM, TIME_TO = NOW - timedelta(hours=1), NOW + timedelta(minutes=1)
INTERVAL, INTERVAL_MS = "1m", 60_000

# Both database branches (plain PostgreSQL, TimescaleDB): see edgeloop.testing.fixtures.
pytestmark = pytest.mark.db_branches()

# PostgreSQL type OIDs of the result columns.
TIME_TYPES = {1114, 1184}
NUMERIC_TYPES = {20, 21, 23, 700, 701, 1700}
TEXT_TYPES = {25, 1043, 19}
BOOL_TYPES = {16}


# --- the macro expander -------------------------------------------------------------

class UnsupportedMacro(AssertionError):
    """A query uses a macro or variable the expander does not know."""


def _interval_seconds(text: str) -> int:
    text = text.strip().strip("'\"")
    if text == "$__interval":
        text = INTERVAL
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if not match:
        raise UnsupportedMacro(f"interval {text!r} is not like 30s, 5m, 1h")
    value, unit = int(match.group(1)), match.group(2)
    if unit == "ms":
        return max(1, value // 1000)
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


Values = dict[str, str | list[str]]
"""Template variable values: a string, or a list for a multi-value variable."""


def _variable(match: re.Match[str], variables: Values) -> str:
    # Grafana's SQL data sources quote and comma-join multi-value variables whatever the
    # format; single values are inserted raw unless formatted with :sqlstring.
    name = match.group("braced") or match.group("plain")
    fmt = match.group("format")
    if name not in variables:
        raise UnsupportedMacro(f"template variable ${name} has no value "
                               f"(known: {sorted(variables)})")
    if fmt not in (None, "raw", "sqlstring"):
        raise UnsupportedMacro(f"variable format :{fmt} is not supported")
    value = variables[name]
    if isinstance(value, list):
        return ",".join(_quote(v) for v in value)
    return _quote(value) if fmt == "sqlstring" else value


_VARIABLE = re.compile(r"\$\{(?P<braced>[A-Za-z]\w*)(?::(?P<format>\w+))?\}"
                       r"|\$(?P<plain>[A-Za-z]\w*)")
_ARGS = r"\(\s*([^(),]+?)\s*(?:,\s*([^()]+?)\s*)?\)"


def expand(sql: str, variables: Values) -> str:
    """``sql`` with Grafana's PostgreSQL macros and template variables expanded."""
    start, end = f"'{TIME_FROM.isoformat()}'", f"'{TIME_TO.isoformat()}'"
    epoch_from, epoch_to = int(TIME_FROM.timestamp()), int(TIME_TO.timestamp())
    sql = _VARIABLE.sub(lambda m: _variable(m, variables), sql)
    sql = re.sub(r"\$__timeFilter" + _ARGS,
                 lambda m: f"{m.group(1)} BETWEEN {start} AND {end}", sql)
    sql = re.sub(r"\$__unixEpochFilter" + _ARGS,
                 lambda m: f"{m.group(1)} >= {epoch_from} AND {m.group(1)} <= {epoch_to}", sql)
    sql = re.sub(r"\$__timeFrom\(\)", start, sql)
    sql = re.sub(r"\$__timeTo\(\)", end, sql)

    def group(m: re.Match[str], alias: bool) -> str:
        if m.group(2) is None:
            raise UnsupportedMacro(f"{m.group(0)}: $__timeGroup needs (column, interval)")
        seconds = _interval_seconds(m.group(2))
        text = f"floor(extract(epoch from {m.group(1)})/{seconds})*{seconds}"
        return f'{text} AS "time"' if alias else text

    sql = re.sub(r"\$__timeGroupAlias" + _ARGS, lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup" + _ARGS, lambda m: group(m, False), sql)
    sql = sql.replace("$__interval_ms", str(INTERVAL_MS)).replace("$__interval", INTERVAL)
    leftover = re.search(r"\$\{?[A-Za-z_]\w*", sql)
    if leftover:
        raise UnsupportedMacro(f"unsupported macro or variable {leftover.group(0)!r} in:\n{sql}")
    return sql


# --- what Grafana would run --------------------------------------------------------

@dataclass
class Query:
    """One SQL query from the provisioned files and what its consumer needs."""

    source: str
    consumer: str  # panel type, "annotation", "variable" or "alert"
    fmt: str
    sql: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.source


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def dashboard_queries(path: Path) -> list[Query]:
    """Panel targets and annotation queries of one dashboard."""
    board = load_dashboard(path)
    queries = []
    for panel in board["panels"]:
        for t in panel.get("targets", []):
            queries.append(Query(f"{path.name}: panel {panel['title']!r} {t['refId']}",
                                 panel["type"], t["format"], t["rawSql"],
                                 {"xField": panel.get("options", {}).get("xField")}))
    for annotation in board["annotations"]["list"]:
        if "target" in annotation:
            queries.append(Query(f"{path.name}: annotation {annotation['name']!r}", "annotation",
                                 annotation["target"]["format"], annotation["target"]["rawSql"]))
    return queries


def alert_queries(path: Path = ALERT_RULES, consumer: str = "alert") -> list[Query]:
    """SQL queries of the alert rules of one provisioning file (the generated drift rules by
    default)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    queries = []
    for group in document["groups"]:
        for rule in group["rules"]:
            for data in rule["data"]:
                if data["datasourceUid"] != "__expr__":
                    queries.append(Query(f"alert {rule['title']!r} {data['refId']}", consumer,
                                         data["model"]["format"], data["model"]["rawSql"],
                                         {"rule": rule["title"]}))
    return queries


GATEWAY_ALERT_QUERIES = alert_queries(GATEWAY_RULES, "gateway alert")


ALL_DASHBOARD_QUERIES = [q for path in DASHBOARDS for q in dashboard_queries(path)]


# --- the database ------------------------------------------------------------------

def _reader_script(owner: str) -> str:
    """The Grafana role's init script with its psql variables filled in."""
    text = (GRAFANA / "timescaledb-init" / "grafana-reader.sql.in").read_text(encoding="utf-8")
    text = text.replace(":'grafana_password'", "'test-password'")
    return text.replace(':"owner"', f'"{owner}"')


async def _create_schema(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(_reader_script(PostgresCluster.superuser).encode())
        await ensure_schema(conn, Policies())
        await apply_migrations(conn, "trainer", load_migrations("edgeloop.trainer"))


def _observation(i: int, deployment: str, version: str, at: datetime, saturation: float) -> tuple:
    sensor = 40.0 + (i * 7) % 200
    labelled = i % 5 != 0
    prediction = sensor + (i % 11) - 5
    return (str(uuid.uuid4()), at, at + timedelta(milliseconds=20), f"robot-{i % 2}", deployment,
            "parking", version, "stable", prediction, sensor if labelled else None,
            (prediction - sensor) if labelled else None, 12.0 + i % 9, i % 50 == 0,
            f"features/{deployment}/{at:%Y-%m-%d}/{i}.jpg", 9000, 320, 240,
            120.0 + i % 10, 100.0 + i % 7, 80.0 + i % 5, 15.0 + i % 3, saturation + (i % 5) - 2,
            55.0, 30.0 + i % 4, 150.0 + i % 13, 0.08 + (i % 3) / 100, 120 + i % 17, 7.1)


def _gateway_samples() -> list[tuple[Any, ...]]:
    """Two gateway processes sampled every 10 s for 40 minutes: gw-1's spool fills from 30
    to 20 minutes ago (full, live frames answered without a record, for the last 5 of them),
    then drains; gw-2 records throughout; gw-1's newest sample is "features failing". gw-1's
    spool disk has 20 % free until 5 minutes ago, 6 % since; gw-2 does not measure its disk
    (a gateway before the disk fields). One of gw-2's robots has had its clock an hour behind
    for the last 8 minutes. A third, gw-3, ran for 10 minutes two hours ago and stopped
    cleanly (outside the dashboards' hour)."""
    rows: list[tuple[Any, ...]] = [
        (NOW - timedelta(hours=2, seconds=10 * i), "gw-3", 0, 1000,
         "stopped" if i == 0 else "recording", 1, 1, 4.0, 0.0, DISK // 2, DISK, 0, None)
        for i in range(60)]
    for i in range(240):
        at = NOW - timedelta(seconds=10 * i)
        minutes = i / 6
        filling = 20 <= minutes <= 30
        full = 20 <= minutes <= 25
        backlog = 1000 if full else (int(1000 * (30 - minutes) / 5) if filling else 10)
        state = "not recording" if full else "recording"
        disk_free = DISK * 6 // 100 if minutes < 5 else DISK // 5
        rows.append((at, "gw-1", backlog, 1000, "features failing" if i == 0 else state, 4, 5,
                     16.0, 16.0 if full else 0.0, disk_free, DISK, 0, None))
        clock_off = (1, -3600.0) if minutes < 8 else (0, None)
        rows.append((at, "gw-2", 20, 1000, "recording", 6, 6, 24.0, 0.0, None, None,
                     *clock_off))
    return rows


def _insert_rows(url: str) -> None:
    """Two deployments over the last 40 minutes (B drifted: saturation 70), one model
    switch in A, a drift event, sweeps, a Grafana alert and two gateways' samples."""
    rows = []
    for i in range(480):
        at = NOW - timedelta(seconds=5 * i)
        rows.append(_observation(i, "dep-a", "1" if i > 240 else "2", at, 50.0))
        rows.append(_observation(i + 1, "dep-b", "1", at, 70.0))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO features.observations (observation_id, time, received_at, device_id, "
            "deployment, model_name, model_version, arm, prediction_mm, sensor_mm, error_mm, "
            "latency_ms, late, image_key, image_bytes, width, height, mean_r, mean_g, mean_b, "
            "hue, saturation, brightness, contrast, sharpness, edge_density, keypoints, entropy) "
            "VALUES (" + ", ".join(["%s"] * 28) + ")", rows)
        conn.execute(
            "INSERT INTO features.drift_events (event_id, rule, kind, deployment, model_name, "
            "model_version, state, \"values\", threshold, window_start, window_end, fired_at, "
            "sweep_id) VALUES (%s, 'saturation_band', 'covariate', 'dep-a', 'parking', '1', "
            "'resolved', '{\"mean\": 66.2}', '[40, 60]', %s, %s, %s, 'sweep1')",
            (str(uuid.uuid4()), NOW - timedelta(minutes=30), NOW - timedelta(minutes=25),
             NOW - timedelta(minutes=25)))
        conn.execute("UPDATE features.drift_events SET resolved_at = %s",
                     (NOW - timedelta(minutes=15),))
        for sweep_id, state, minutes in (("sweep1", "SUCCEEDED", 24), ("sweep2", "RUNNING", 3)):
            sweep = {"sweep_id": sweep_id, "model_name": "parking", "trigger": "drift:x",
                     "deployment": "dep-a", "holdout_mae_mm": 4.5, "promoted": True}
            conn.execute("INSERT INTO trainer.sweeps (sweep_id, model_name, state, created_at, "
                         "sweep, request) VALUES (%s, 'parking', %s, %s, %s, '{}')",
                         (sweep_id, state, NOW - timedelta(minutes=minutes), json.dumps(sweep)))
        conn.cursor().executemany(
            "INSERT INTO features.gateway_samples (time, gateway_id, backlog_bytes, max_bytes, "
            "recording, robots_streaming, streams_open, frames_per_s, not_recorded_per_s, "
            "disk_free_bytes, disk_total_bytes, robots_clock_off, worst_clock_offset_s) "
            "VALUES (" + ", ".join(["%s"] * 13) + ")", _gateway_samples())
        conn.execute("INSERT INTO trainer.grafana_alerts (fingerprint, starts_at, alertname, "
                     "sweep_id, received_at) VALUES ('f1', 'now', 'saturation_band', 'sweep2', %s)",
                     (NOW - timedelta(minutes=3),))


@pytest.fixture(scope="module")
def grafana_db(request: pytest.FixtureRequest, db_branch: str) -> Iterator[psycopg.Connection]:
    """A connection, as Grafana's read-only role, to a database with the services'
    schemas and a few observations, on the cluster of ``db_branch``."""
    url = cluster_of(request, db_branch).ensure_database(f"grafana_{uuid.uuid4().hex[:10]}")
    asyncio.run(_create_schema(url))
    _insert_rows(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE grafana_reader")
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn


@pytest.fixture(scope="module")
def variables(grafana_db: psycopg.Connection) -> dict[str, Values]:
    """Each dashboard's template variables, query variables resolved by running their
    query (so those queries are exercised too): a multi-value variable takes every
    value (as "All" does), the n-th single-value variable the n-th value."""
    values: dict[str, Values] = {}
    for path in DASHBOARDS:
        board_values: Values = {}
        for n, var in enumerate(load_dashboard(path)["templating"]["list"]):
            if var["type"] == "query":
                rows = grafana_db.execute(expand(var["query"], board_values)).fetchall()
                assert rows, f"{path.name}: variable {var['name']} query returned nothing"
                found = [str(row[0]) for row in rows]
                board_values[var["name"]] = found if var["multi"] else found[min(n, len(found) - 1)]
            elif var["type"] == "custom":
                board_values[var["name"]] = str(var["current"]["value"])
            else:
                raise AssertionError(f"{path.name}: variable type {var['type']} not handled")
        values[path.name] = board_values
    return values


# --- column checks -----------------------------------------------------------------

def _columns(cursor: psycopg.Cursor) -> list[tuple[str, int]]:
    return [(c.name, c.type_code) for c in cursor.description or []]


def check_columns(query: Query, columns: list[tuple[str, int]]) -> None:
    """The columns ``query``'s consumer needs are there, with usable types."""
    names = [name for name, _ in columns]
    types = dict(columns)
    where = f"{query}: columns {columns}"
    if query.consumer == "annotation":
        # Grafana reads these names only; a misspelt one would be silently ignored.
        assert set(names) <= {"time", "timeend", "text", "tags"}, where
        assert types.get("time") in TIME_TYPES, where
        assert types.get("text") in TEXT_TYPES, where
        assert "timeend" not in types or types["timeend"] in TIME_TYPES, where
        assert "tags" not in types or types["tags"] in TEXT_TYPES, where
    elif query.consumer == "gateway alert":
        assert names == ["gateway", "value"], where
        assert types["gateway"] in TEXT_TYPES and types["value"] in NUMERIC_TYPES, where
    elif query.consumer == "alert":
        assert names == ["deployment", "model", "value"], where
        assert types["deployment"] in TEXT_TYPES and types["model"] in TEXT_TYPES, where
        assert types["value"] in NUMERIC_TYPES, where
    elif query.fmt == "time_series":
        assert names[0] == "time" and types["time"] in TIME_TYPES | NUMERIC_TYPES, where
        values = [(n, t) for n, t in columns[1:] if n != "metric"]
        assert values and all(t in NUMERIC_TYPES for _, t in values), where
        assert "metric" not in types or types["metric"] in TEXT_TYPES, where
    elif query.consumer == "barchart":
        assert query.extra["xField"] in types, f"{where}: no xField {query.extra['xField']!r}"
        assert any(t in NUMERIC_TYPES for n, t in columns if n != query.extra["xField"]), where
    elif query.consumer == "stat":
        assert columns and all(t in NUMERIC_TYPES for _, t in columns), where
    else:
        assert query.consumer == "table" and columns, where
        assert len(set(names)) == len(names), f"{where}: duplicate column names"


# --- tests -------------------------------------------------------------------------

def test_every_dashboard_has_queries() -> None:
    titles = {load_dashboard(p)["title"] for p in DASHBOARDS}
    assert titles == {"Inference data analysis", "Drift timeline", "Infrastructure"}
    assert len(ALL_DASHBOARD_QUERIES) >= 25
    assert {q.consumer for q in ALL_DASHBOARD_QUERIES} >= {"timeseries", "barchart", "stat",
                                                          "table", "annotation"}


@pytest.mark.parametrize("query", ALL_DASHBOARD_QUERIES, ids=str)
def test_dashboard_query_runs_on_the_schema(query: Query, grafana_db: psycopg.Connection,
                                            variables: dict[str, Values]) -> None:
    board = query.source.split(":")[0]
    cursor = grafana_db.execute(expand(query.sql, variables[board]))
    rows = cursor.fetchall()
    assert rows, f"{query}: no rows for the inserted observations"
    check_columns(query, _columns(cursor))


def test_two_deployments_side_by_side(variables: dict[str, Values]) -> None:
    chosen = variables["inference-data-analysis.json"]
    assert {chosen["deployment_a"], chosen["deployment_b"]} == {"dep-a", "dep-b"}


def test_model_switch_annotation_marks_the_new_version(
        grafana_db: psycopg.Connection, variables: dict[str, Values]) -> None:
    query = next(q for q in ALL_DASHBOARD_QUERIES if "Model switches" in q.source)
    values = dict(variables["drift-timeline.json"], deployment="dep-a")
    texts = [row[1] for row in grafana_db.execute(expand(query.sql, values)).fetchall()]
    # Version 1 was first seen 40 minutes ago (inside the range), version 2 20 minutes ago.
    assert texts == ["model parking version 1 starts serving",
                     "model parking version 2 starts serving"]


def _panel_rows(grafana_db: psycopg.Connection, variables: dict[str, Values],
                title: str) -> list[tuple[Any, ...]]:
    query = next(q for q in ALL_DASHBOARD_QUERIES if title in q.source)
    return grafana_db.execute(expand(query.sql, variables["infrastructure.json"])).fetchall()


def test_the_spool_panels_show_a_gateways_outage(
        grafana_db: psycopg.Connection, variables: dict[str, Values]) -> None:
    backlog = _panel_rows(grafana_db, variables, "Spool backlog by gateway")
    full = {(row[1], row[2]) for row in backlog if row[2] == 100}
    assert {gateway for gateway, _ in full} == {"gw-1"}
    # 20-25 minutes ago, sampled every 10 s, in 1-minute buckets: 5 or 6 full buckets.
    assert 5 <= len([row for row in backlog if row[1] == "gw-1" and row[2] == 100]) <= 6
    assert max(row[2] for row in backlog if row[1] == "gw-2") == 2
    frames = _panel_rows(grafana_db, variables, "answered without a record")
    unrecorded = {row[1] for row in frames if row[3] > 0}
    assert unrecorded == {"gw-1"}
    assert {row[1]: row[2] for row in frames} == {"gw-1": 16.0, "gw-2": 24.0}
    robots = _panel_rows(grafana_db, variables, "Robots streaming by gateway")
    assert {row[1]: row[2] for row in robots} == {"gw-1": 4, "gw-2": 6}
    last = _panel_rows(grafana_db, variables, "Gateways: last sample")
    assert [(row[0], row[2], row[3], row[4], float(row[5])) for row in last] == [
        ("gw-1", "features failing", 4, 5, 1.0), ("gw-2", "recording", 6, 6, 2.0)]
    assert [row[7] for row in last] == [6.0, None], "disk free %; gw-2 does not measure it"
    assert [(row[8], row[9]) for row in last] == [(0, None), (1, -3600.0)], "clocks off"


@pytest.mark.parametrize("query", alert_queries(), ids=str)
def test_alert_query_runs_and_sees_the_drifted_deployment(
        query: Query, grafana_db: psycopg.Connection) -> None:
    # Grafana evaluates the rule at its own now(); evaluate it at the NOW the rows were
    # inserted around, so a slow suite between collection and this test cannot empty it.
    sql = expand(query.sql, {}).replace("now()", f"TIMESTAMPTZ '{NOW.isoformat()}'")
    cursor = grafana_db.execute(sql)
    rows = cursor.fetchall()
    check_columns(query, _columns(cursor))
    values = {deployment: value for deployment, _, value in rows}
    assert set(values) == {"dep-a", "dep-b"}
    assert {model for _, model, _ in rows} == {"parking"}
    # dep-a was inserted around saturation 50 (inside the thesis band), dep-b around 70.
    assert 48 <= values["dep-a"] <= 52 and 68 <= values["dep-b"] <= 72


def _gateway_alert(grafana_db: psycopg.Connection, rule: str,
                   at: datetime) -> dict[str, tuple[float, bool]]:
    """Each gateway's value of an operators' rule evaluated at ``at``, and whether the
    rule's threshold fires on it."""
    query = next(q for q in GATEWAY_ALERT_QUERIES if q.extra["rule"] == rule)
    cursor = grafana_db.execute(
        expand(query.sql, {}).replace("now()", f"TIMESTAMPTZ '{at.isoformat()}'"))
    rows = cursor.fetchall()
    check_columns(query, _columns(cursor))
    document = yaml.safe_load(GATEWAY_RULES.read_text(encoding="utf-8"))
    found = next(r for g in document["groups"] for r in g["rules"] if r["title"] == rule)
    evaluator = found["data"][-1]["model"]["conditions"][0]["evaluator"]
    fires = {"gt": lambda value: value > evaluator["params"][0],
             "lt": lambda value: value < evaluator["params"][0]}[evaluator["type"]]
    return {gateway: (float(value), fires(float(value))) for gateway, value in rows}


def test_the_operators_rules_see_a_gateways_full_spool(grafana_db: psycopg.Connection) -> None:
    during = NOW - timedelta(minutes=22)  # gw-1's spool full, frames answered unrecorded
    filling = _gateway_alert(grafana_db, "gateway_spool_filling", during)
    assert filling == {"gw-1": (100.0, True), "gw-2": (2.0, False)}
    unrecorded = _gateway_alert(grafana_db, "gateway_answering_unrecorded", during)
    assert unrecorded == {"gw-1": (16.0, True), "gw-2": (0.0, False)}
    # 27 minutes ago gw-1's spool was filling but at 60 %, every frame recorded.
    earlier = NOW - timedelta(minutes=27)
    assert _gateway_alert(grafana_db, "gateway_spool_filling", earlier)["gw-1"] == (60.0, False)
    assert _gateway_alert(grafana_db, "gateway_answering_unrecorded", earlier)["gw-1"] == (
        0.0, False)
    # Now it has drained: neither rule fires for any gateway.
    for rule in ("gateway_spool_filling", "gateway_answering_unrecorded"):
        assert not any(fires for _, fires in _gateway_alert(grafana_db, rule, NOW).values())
    # Nothing sampled in the last 2 minutes: no row, so no alert (a silent gateway's rule).
    assert _gateway_alert(grafana_db, "gateway_spool_filling", NOW + timedelta(minutes=5)) == {}


def test_the_operators_rules_see_a_gateways_disk_run_low(grafana_db: psycopg.Connection) -> None:
    low = _gateway_alert(grafana_db, "gateway_disk_low", NOW)
    assert low == {"gw-1": (pytest.approx(6.0), True)}, "gw-2 does not measure its disk"
    assert _gateway_alert(grafana_db, "gateway_disk_low", NOW - timedelta(minutes=10)) == {
        "gw-1": (pytest.approx(20.0), False)}
    # Two hours ago only gw-3 sampled, half its disk free.
    assert _gateway_alert(grafana_db, "gateway_disk_low", NOW - timedelta(hours=2)) == {
        "gw-3": (pytest.approx(50.0), False)}
    # Grafana's mark is the console's and `edgeloop status`'s "low".
    document = yaml.safe_load(GATEWAY_RULES.read_text(encoding="utf-8"))
    rule = next(r for g in document["groups"] for r in g["rules"]
                if r["title"] == "gateway_disk_low")
    evaluator = rule["data"][-1]["model"]["conditions"][0]["evaluator"]
    assert evaluator == {"type": "lt", "params": [pytest.approx(100 * LOW_FRACTION)]}


def test_the_operators_rules_see_a_robots_clock_off(grafana_db: psycopg.Connection) -> None:
    assert _gateway_alert(grafana_db, "robot_clock_off", NOW) == {
        "gw-1": (0.0, False), "gw-2": (1.0, True)}
    assert _gateway_alert(grafana_db, "robot_clock_off", NOW - timedelta(minutes=10)) == {
        "gw-1": (0.0, False), "gw-2": (0.0, False)}, "before its clock went off"


def test_the_operators_rules_tell_a_silent_gateway_from_a_stopped_one(
        grafana_db: psycopg.Connection) -> None:
    assert _gateway_alert(grafana_db, "gateway_silent", NOW) == {
        "gw-1": (0.0, False), "gw-2": (0.0, False)}, "gw-3 stopped cleanly: never silent"
    later = _gateway_alert(grafana_db, "gateway_silent", NOW + timedelta(minutes=5))
    assert later == {"gw-1": (300.0, True), "gw-2": (300.0, True)}
    assert _gateway_alert(grafana_db, "gateway_silent", NOW + timedelta(minutes=1)) == {
        "gw-1": (60.0, False), "gw-2": (60.0, False)}
    # A gateway gone for over a day is no longer reported.
    assert _gateway_alert(grafana_db, "gateway_silent", NOW + timedelta(days=2)) == {}


def test_operators_alerts_reach_their_contact_point_and_drift_alerts_the_trainer() -> None:
    policy = yaml.safe_load((ALERTING / "policies.yaml").read_text(encoding="utf-8"))
    root = policy["policies"][0]

    def receiver(labels: dict[str, str]) -> str:
        # Grafana: the first child route whose matchers all match, else the root's receiver.
        for route in root.get("routes", []):
            if all(labels.get(name) == value for name, op, value in route["object_matchers"]
                   if op == "="):
                return route["receiver"]
        return root["receiver"]

    gateway_rules = [r for g in yaml.safe_load(GATEWAY_RULES.read_text(encoding="utf-8"))[
        "groups"] for r in g["rules"]]
    drift_rules = [r for g in yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))[
        "groups"] for r in g["rules"]]
    assert {r["title"] for r in gateway_rules} == {
        "gateway_spool_filling", "gateway_answering_unrecorded", "gateway_disk_low",
        "robot_clock_off", "gateway_silent"}
    assert {receiver(r["labels"]) for r in gateway_rules} == {"edgeloop-operators"}
    assert drift_rules and {receiver(r["labels"]) for r in drift_rules} == {"edgeloop-trainer"}
    assert all(op == "=" for route in root["routes"] for _, op, _ in route["object_matchers"])
    points = {p["name"]: p["receivers"][0] for p in yaml.safe_load(
        (ALERTING / "contact-points.yaml").read_text(encoding="utf-8"))["contactPoints"]}
    operators = points["edgeloop-operators"]["settings"]
    assert operators["url"] == "${EDGELOOP_OPERATOR_ALERTS_URL}"
    assert operators["authorization_credentials"] == "${EDGELOOP_WEBHOOK_SECRET}"
    for rule in gateway_rules:
        assert rule["noDataState"] == "OK" and rule["for"] in {"0s", "1m", "2m"}
        assert "{{ .Labels.gateway }}" in rule["annotations"]["summary"]


def test_grafana_role_reads_but_cannot_write(grafana_db: psycopg.Connection) -> None:
    assert grafana_db.execute("SELECT count(*) FROM features.observations").fetchone()[0] == 960
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        grafana_db.execute("DELETE FROM features.drift_events")


def test_expander_refuses_unknown_macros() -> None:
    with pytest.raises(UnsupportedMacro, match=r"\$__timeEpoch"):
        expand("SELECT $__timeEpoch(time) FROM t", {})
    with pytest.raises(UnsupportedMacro, match="deployment"):
        expand("SELECT 1 WHERE deployment = $deployment", {})
    with pytest.raises(UnsupportedMacro, match="csv"):
        expand("SELECT 1 WHERE d IN (${deployment:csv})", {"deployment": "a"})


def test_expander_matches_grafana() -> None:
    sql = expand("SELECT $__timeGroupAlias(time, $__interval), x FROM t WHERE "
                 "$__timeFilter(time) AND d = ${d:sqlstring} AND n = $n", {"d": "o'k", "n": "5"})
    assert 'floor(extract(epoch from time)/60)*60 AS "time"' in sql
    assert f"time BETWEEN '{TIME_FROM.isoformat()}' AND '{TIME_TO.isoformat()}'" in sql
    assert "d = 'o''k' AND n = 5" in sql
    assert expand("d IN (${d:sqlstring}) OR d IN ($d)", {"d": ["a", "b"]}) == (
        "d IN ('a','b') OR d IN ('a','b')")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_alerts", GRAFANA / "generate_alerts.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_alert_rules_are_generated_from_the_drift_rules() -> None:
    generator = _generator()
    assert ALERT_RULES.read_text(encoding="utf-8") == generator.render(load_rules()), (
        "compose/grafana/provisioning/alerting/rules.yaml is stale: "
        "run `uv run python compose/grafana/generate_alerts.py`")


def test_thesis_rule_is_a_grafana_alert_with_its_band_and_pending_period() -> None:
    document = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    rules = {r["title"]: r for g in document["groups"] for r in g["rules"]}
    thesis = rules["saturation_band"]
    assert thesis["for"] == "1m"
    evaluator = thesis["data"][1]["model"]["conditions"][0]["evaluator"]
    assert evaluator == {"type": "outside_range", "params": [40.0, 60.0]}
    assert "features.observations_5m" in thesis["data"][0]["model"]["rawSql"]
    # Everything the monitor alone evaluates is named in the header instead.
    header = ALERT_RULES.read_text(encoding="utf-8").split("apiVersion")[0]
    for rule in load_rules():
        assert rule.name in rules or f"#   {rule.name}:" in header


def test_alert_files_have_no_dollar_for_grafana_to_interpolate() -> None:
    for path in (ALERT_RULES, GATEWAY_RULES):
        assert "$" not in path.read_text(encoding="utf-8"), path.name


def test_every_provisioning_file_parses_and_points_at_the_data_source() -> None:
    files = sorted((GRAFANA / "provisioning").rglob("*.yaml"))
    assert len(files) >= 5
    documents = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in files}
    assert all(d["apiVersion"] == 1 for d in documents.values())
    source = documents["timescaledb.yaml"]["datasources"][0]
    assert source["uid"] == DATASOURCE_UID and source["jsonData"]["timescaledb"] is True
    assert source["url"] == "timescaledb:5432"
    receiver = documents["contact-points.yaml"]["contactPoints"][0]["receivers"][0]
    assert receiver["type"] == "webhook"
    assert receiver["settings"]["url"] == "http://trainer:50080/hooks/grafana"
    assert receiver["settings"]["authorization_credentials"] == "${EDGELOOP_WEBHOOK_SECRET}"
    policy = documents["policies.yaml"]["policies"][0]
    assert policy["receiver"] == documents["contact-points.yaml"]["contactPoints"][0]["name"]
    for path in DASHBOARDS:
        for panel in load_dashboard(path)["panels"]:
            uid = panel.get("datasource", {}).get("uid", DATASOURCE_UID)
            assert uid == DATASOURCE_UID, f"{path.name}: {panel['title']}"
    for path in (ALERT_RULES, GATEWAY_RULES):
        alerts = yaml.safe_load(path.read_text(encoding="utf-8"))
        for rule in alerts["groups"][0]["rules"]:
            assert {d["datasourceUid"] for d in rule["data"]} == {DATASOURCE_UID, "__expr__"}
