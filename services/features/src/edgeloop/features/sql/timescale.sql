-- TimescaleDB branch: run at every start after the migrations, so every statement is
-- idempotent. The continuous aggregate's SELECT is sql/rollup_select.sql with a
-- time_bucket bucket; the policy intervals come from the settings (schema.py).
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- migrate_data: a database that ran on plain PostgreSQL before keeps its rows.
SELECT create_hypertable('features.observations', 'time',
                         chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('features.shadow_predictions', 'time',
                         chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => TRUE, migrate_data => TRUE);
-- A gateway's sample every 10 s is ~8,600 rows a day: a week per chunk.
SELECT create_hypertable('features.gateway_samples', 'time',
                         chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => TRUE, migrate_data => TRUE);

-- Chunks are time ranges with their own time index; the plain branch's BRIN is not needed.
DROP INDEX IF EXISTS features.observations_time_brin;
DROP INDEX IF EXISTS features.shadow_predictions_time_brin;
DROP INDEX IF EXISTS features.gateway_samples_time_brin;

-- Compression settings cannot be re-set while chunks are compressed: set them once.
DO $$
BEGIN
    IF NOT (SELECT compression_enabled FROM timescaledb_information.hypertables
            WHERE hypertable_schema = 'features' AND hypertable_name = 'observations') THEN
        ALTER TABLE features.observations SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'deployment',
            timescaledb.compress_orderby = 'time DESC');
    END IF;
END
$$;
-- Remove, then add: the policy follows a changed EDGELOOP_COMPRESS_AFTER_DAYS.
SELECT remove_compression_policy('features.observations', if_exists => TRUE);
SELECT add_compression_policy('features.observations', compress_after => INTERVAL '{compress_after}');

-- The plain branch's view, if this database ran without TimescaleDB before.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_views WHERE schemaname = 'features' AND viewname = 'observations_5m')
       AND NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                       WHERE view_schema = 'features' AND view_name = 'observations_5m') THEN
        DROP VIEW features.observations_5m;
    END IF;
END
$$;

-- Real-time aggregation (materialized_only = false): buckets newer than the last
-- refresh are computed from the raw rows, so the rollup is never stale.
CREATE MATERIALIZED VIEW IF NOT EXISTS features.observations_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
{rollup_select}
WITH NO DATA;

SELECT remove_continuous_aggregate_policy('features.observations_5m', if_exists => TRUE);
SELECT add_continuous_aggregate_policy('features.observations_5m',
                                       start_offset => INTERVAL '{refresh_start}',
                                       end_offset => INTERVAL '5 minutes',
                                       schedule_interval => INTERVAL '5 minutes');

-- Retention is replaced at every start; sql/timescale_retention.sql adds it back when
-- EDGELOOP_RETENTION_DAYS > 0. The rollup keeps its rows after raw chunks are dropped.
SELECT remove_retention_policy('features.observations', if_exists => TRUE);
SELECT remove_retention_policy('features.shadow_predictions', if_exists => TRUE);
SELECT remove_retention_policy('features.gateway_samples', if_exists => TRUE);
