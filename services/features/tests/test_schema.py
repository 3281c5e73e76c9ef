"""The features schema: both branches for real, and their statements as text.

The text checks pin what each branch runs: one statement each (continuous aggregates
refuse transaction blocks), the continuous aggregate's SELECT list equal to the plain
view's column for column with time_bucket in place of date_bin, and the policies
following the settings. Then each branch runs on a real server (the plain one on a
cluster without the TimescaleDB preload, the TimescaleDB one where the extension is
installed, as ``./run test`` does), and a plain cluster with rows upgrades: restarted
with the preload, its rows move into the hypertable.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlparse
from edgeloop.features import schema as schema_module
from edgeloop.features.rollup import DATE_BIN, TIME_BUCKET
from edgeloop.features.schema import Policies, branch_sql, ensure_schema, split_statements
from edgeloop.platform.migrations import load_migrations
from edgeloop.platform.pgcluster import PostgresCluster
from edgeloop.testing import free_port
from edgeloop.testing.fixtures import NOT_INSTALLED, cluster_of, timescaledb_here
from sqlparse.sql import Identifier, IdentifierList


def select_list(statement: str) -> list[tuple[str, str]]:
    """(expression, alias) of the SELECT list inside ``statement``."""
    body = statement[statement.index("SELECT "):statement.index("FROM features.observations")]
    parsed = sqlparse.parse(body)[0]
    items = next(t for t in parsed.tokens if isinstance(t, IdentifierList))
    columns = []
    for item in items.get_identifiers():
        assert isinstance(item, Identifier), item
        alias = item.get_alias() or item.get_real_name()
        expression = re.sub(r"\s+AS\s+\w+$", "", str(item), flags=re.IGNORECASE)
        columns.append((expression, alias))
    return columns


def statement_with(statements: list[str], text: str) -> str:
    (found,) = [s for s in statements if text in s]
    return found


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_branch: str) -> str:
    """An empty database (not the conftest's copy of a migrated one): this module tests how
    the schema is created."""
    return cluster_of(request, db_branch).ensure_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def timescale() -> list[str]:
    return split_statements(branch_sql(True, Policies(retention_days=30, compress_after_days=3)))


@pytest.fixture
def plain() -> list[str]:
    return split_statements(branch_sql(False, Policies()))


def test_rollup_has_the_same_columns_on_both_branches(timescale, plain):
    cagg = select_list(statement_with(timescale, "timescaledb.continuous"))
    view = select_list(statement_with(plain, "CREATE OR REPLACE VIEW"))
    assert [alias for _, alias in cagg] == [alias for _, alias in view]
    assert cagg[0] == (TIME_BUCKET, "bucket") and view[0] == (DATE_BIN, "bucket")
    assert cagg[1:] == view[1:]  # every aggregate identical


def test_rollup_covers_every_statistic(plain):
    from edgeloop.features.statistics import STAT_NAMES

    aliases = {alias for _, alias in select_list(statement_with(plain, "VIEW"))}
    for name in (*STAT_NAMES, "prediction_mm", "sensor_mm", "error_mm", "abs_error_mm"):
        assert f"avg_{name}" in aliases
    for name in ("prediction_mm", "sensor_mm", "error_mm"):
        assert {f"min_{name}", f"max_{name}"} <= aliases
    assert {"bucket", "deployment", "observation_count", "labelled_count"} <= aliases


def test_timescale_statements(timescale):
    assert timescale[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    for table in ("observations", "shadow_predictions", "gateway_samples"):
        hypertable = statement_with(timescale, f"create_hypertable('features.{table}'")
        assert "'time'" in hypertable and "migrate_data => TRUE" in hypertable
    compress = statement_with(timescale, "ALTER TABLE features.observations SET")
    assert "timescaledb.compress_segmentby = 'deployment'" in compress
    assert ("SELECT add_compression_policy('features.observations', "
            "compress_after => INTERVAL '3 days')") in timescale
    cagg = statement_with(timescale, "CREATE MATERIALIZED VIEW")
    assert "timescaledb.materialized_only = false" in cagg and cagg.endswith("WITH NO DATA")
    assert "GROUP BY bucket, deployment" in cagg
    policy = statement_with(timescale, "add_continuous_aggregate_policy")
    assert "start_offset => INTERVAL '7 days'" in policy
    assert "end_offset => INTERVAL '5 minutes'" in policy
    retention = [s for s in timescale if "add_retention_policy" in s]
    assert retention == [
        "SELECT add_retention_policy('features.observations', drop_after => INTERVAL '30 days')",
        "SELECT add_retention_policy('features.shadow_predictions', "
        "drop_after => INTERVAL '30 days')",
        "SELECT add_retention_policy('features.gateway_samples', "
        "drop_after => INTERVAL '30 days')"]
    # policies are removed before they are added: a changed setting takes effect at start
    for kind in ("compression", "continuous_aggregate"):
        removed = timescale.index(statement_with(timescale, f"remove_{kind}_policy"))
        added = timescale.index(statement_with(timescale, f"add_{kind}_policy"))
        assert removed < added
    assert not any("{" in s or "}" in s for s in timescale)


def test_retention_zero_keeps_everything():
    statements = split_statements(branch_sql(True, Policies(retention_days=0)))
    assert not [s for s in statements if "add_retention_policy" in s]
    assert [s for s in statements if "remove_retention_policy" in s]


def test_refresh_window_stays_inside_retention():
    statements = split_statements(branch_sql(True, Policies(retention_days=3)))
    assert "start_offset => INTERVAL '2 days'" in statement_with(statements,
                                                                 "add_continuous_aggregate_policy")


def test_do_blocks_stay_whole(timescale):
    blocks = [s for s in timescale if s.startswith("DO $$")]
    assert len(blocks) == 2 and all(b.endswith("$$") and "END IF" in b for b in blocks)


async def _catalog(database_url: str, query: str, *params) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall()


@pytest.mark.db_branches("plain")
async def test_plain_branch_runs_and_is_idempotent(database_url, plain):
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        assert await ensure_schema(conn, Policies()) is False
        assert await ensure_schema(conn, Policies()) is False  # a restart: nothing breaks
    indexes = await _catalog(database_url, "SELECT indexname, indexdef FROM pg_indexes "
                             "WHERE schemaname = 'features' AND indexdef LIKE '%%brin%%'")
    assert {name for name, _ in indexes} == {"observations_time_brin",
                                             "shadow_predictions_time_brin",
                                             "gateway_samples_time_brin"}
    columns = await _catalog(database_url, "SELECT column_name FROM information_schema.columns "
                             "WHERE table_schema = 'features' AND table_name = 'observations_5m' "
                             "ORDER BY ordinal_position")
    view = select_list(statement_with(plain, "VIEW"))
    assert [c for (c,) in columns] == [alias for _, alias in view]
    tables = await _catalog(database_url, "SELECT tablename FROM pg_tables "
                            "WHERE schemaname = 'features' ORDER BY 1")
    assert [t for (t,) in tables] == ["dead_letters", "drift_events", "gateway_samples",
                                      "observations", "schema_migrations",
                                      "shadow_predictions"]
    versions = await _catalog(database_url, "SELECT version FROM features.schema_migrations")
    assert sorted(v for (v,) in versions) == [m.version for m in load_migrations(
        "edgeloop.features")]


async def _is_timescale_layout(url: str) -> None:
    """Assert the TimescaleDB objects exist: hypertables (observations compressed), a
    real-time continuous aggregate, its refresh and the compression policies."""
    hypertables = await _catalog(url, "SELECT hypertable_name, compression_enabled "
                                 "FROM timescaledb_information.hypertables "
                                 "WHERE hypertable_schema = 'features' ORDER BY 1")
    assert hypertables == [("gateway_samples", False), ("observations", True),
                           ("shadow_predictions", False)]
    caggs = await _catalog(url, "SELECT view_name, materialized_only FROM "
                           "timescaledb_information.continuous_aggregates "
                           "WHERE view_schema = 'features'")
    assert caggs == [("observations_5m", False)]
    jobs = await _catalog(url, "SELECT proc_name FROM timescaledb_information.jobs "
                          "WHERE hypertable_schema IS NOT NULL ORDER BY 1")
    assert [j for (j,) in jobs] == ["policy_compression", "policy_refresh_continuous_aggregate"]
    brin = await _catalog(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'features' "
                          "AND indexdef LIKE '%%brin%%'")
    assert brin == []


@pytest.mark.db_branches("timescaledb")
async def test_timescale_branch_runs_and_is_idempotent(database_url, plain):
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        assert await ensure_schema(conn, Policies()) is True
        assert await ensure_schema(conn, Policies(compress_after_days=3)) is True  # a restart
    await _is_timescale_layout(database_url)
    columns = await _catalog(database_url, "SELECT column_name FROM information_schema.columns "
                             "WHERE table_schema = 'features' AND table_name = 'observations_5m' "
                             "ORDER BY ordinal_position")
    view = select_list(statement_with(plain, "VIEW"))
    assert [c for (c,) in columns] == [alias for _, alias in view]
    config = await _catalog(database_url, "SELECT config->>'compress_after' FROM "
                            "timescaledb_information.jobs WHERE proc_name = 'policy_compression'")
    assert config == [("3 days",)]  # the policy follows the latest setting


def _insert_plain_rows(url: str, count: int) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    rows = [(str(uuid.uuid4()), start + timedelta(minutes=7 * i), "car-1", "dep",
             float(i), f"k/{i}.jpg") for i in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO features.observations (observation_id, time, device_id, deployment, "
            "prediction_mm, image_key, image_bytes, width, height, mean_r, mean_g, mean_b, hue, "
            "saturation, brightness, contrast, sharpness, edge_density, keypoints, entropy) "
            "VALUES (%s, %s, %s, %s, %s, %s, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)", rows)


@pytest.mark.skipif(not timescaledb_here(), reason=NOT_INSTALLED)
async def test_a_plain_cluster_with_rows_upgrades_to_timescaledb_on_restart():
    """A stack made before TimescaleDB was installed: its next start takes the preload
    and the schema moves every row into the hypertable (and the rollup sees them)."""
    root = Path(tempfile.mkdtemp(prefix="edgeloop-test-upgrade-"))
    root.chmod(0o755)
    before = PostgresCluster(root / "data", free_port(), durable=False, timescaledb_preload=False)
    after = PostgresCluster(root / "data", free_port(), durable=False)
    try:
        before.start()
        url = before.ensure_database("edgeloop")
        async with await psycopg.AsyncConnection.connect(url) as conn:
            assert await ensure_schema(conn, Policies()) is False
        _insert_plain_rows(url, 500)
        before.stop()

        after.start()
        url = after.dsn("edgeloop")
        preload = await _catalog(url, "SELECT current_setting('shared_preload_libraries')")
        assert preload == [("timescaledb",)]
        async with await psycopg.AsyncConnection.connect(url) as conn:
            assert await ensure_schema(conn, Policies()) is True
        await _is_timescale_layout(url)
        only = await _catalog(url, "SELECT count(*) FROM ONLY features.observations")
        chunks = await _catalog(url, "SELECT count(*) FROM timescaledb_information.chunks "
                                "WHERE hypertable_name = 'observations'")
        total = await _catalog(url, "SELECT count(*), sum(prediction_mm) "
                               "FROM features.observations")
        rollup = await _catalog(url, "SELECT sum(observation_count) FROM features.observations_5m")
        assert only == [(0,)] and chunks[0][0] >= 3  # rows left the parent for day chunks
        assert total == [(500, sum(range(500)))]
        assert rollup == [(500,)]
    finally:
        after.stop()
        before.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_one_day_retention_is_refused_naming_the_variable(monkeypatch):
    from edgeloop.features.settings import Settings
    from edgeloop.platform import ConfigError, load_settings

    monkeypatch.setenv("EDGELOOP_DATABASE_URL", "postgresql://localhost/x")
    monkeypatch.setenv("EDGELOOP_RETENTION_DAYS", "1")
    with pytest.raises(ConfigError, match="EDGELOOP_RETENTION_DAYS"):
        load_settings(Settings)
    monkeypatch.setenv("EDGELOOP_RETENTION_DAYS", "2")
    assert load_settings(Settings).retention_days == 2


def _refusing_refreshes(conn: psycopg.AsyncConnection, monkeypatch: pytest.MonkeyPatch,
                        refusals: int) -> list[bytes]:
    """Make the connection's first ``refusals`` rollup refreshes fail as TimescaleDB does
    while its policy job refreshes; returns the refreshes asked for."""
    real, asked = conn.execute, []

    async def execute(query, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if b"refresh_continuous_aggregate" in (query if isinstance(query, bytes) else b""):
            asked.append(query)
            if len(asked) <= refusals:
                raise psycopg.errors.LockNotAvailable(
                    'could not refresh continuous aggregate "observations_5m" due to a '
                    "concurrent refresh")
        return await real(query, *args, **kwargs)

    monkeypatch.setattr(conn, "execute", execute)
    monkeypatch.setattr(schema_module, "REFRESH_RETRY_S", 0.0)
    return asked


@pytest.mark.db_branches("timescaledb")
async def test_the_first_whole_refresh_waits_for_the_policys_own(database_url, monkeypatch):
    # the policy's job starts as soon as it is added; a CI run's features service died at
    # start when its own refresh met it
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        asked = _refusing_refreshes(conn, monkeypatch, refusals=2)
        assert await ensure_schema(conn, Policies()) is True
    assert len(asked) == 3, "refused twice, then done"
    await _is_timescale_layout(database_url)


@pytest.mark.db_branches("timescaledb")
async def test_a_refresh_refused_every_time_is_an_error_at_start(database_url, monkeypatch):
    monkeypatch.setattr(schema_module, "REFRESH_ATTEMPTS", 3)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        asked = _refusing_refreshes(conn, monkeypatch, refusals=99)
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await ensure_schema(conn, Policies())
    assert len(asked) == 3
