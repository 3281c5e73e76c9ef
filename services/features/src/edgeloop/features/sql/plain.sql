-- Plain PostgreSQL branch (no TimescaleDB): run at every start after the migrations,
-- so every statement is idempotent. The view's SELECT is sql/rollup_select.sql with a
-- date_bin bucket on time_bucket's default origin, so both branches bucket alike.

-- Rows arrive in roughly time order: a BRIN index answers time ranges for a few pages.
CREATE INDEX IF NOT EXISTS observations_time_brin ON features.observations USING brin (time);
CREATE INDEX IF NOT EXISTS shadow_predictions_time_brin ON features.shadow_predictions USING brin (time);
CREATE INDEX IF NOT EXISTS gateway_samples_time_brin ON features.gateway_samples USING brin (time);

CREATE OR REPLACE VIEW features.observations_5m AS
{rollup_select};
