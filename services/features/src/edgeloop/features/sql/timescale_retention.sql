-- TimescaleDB retention (EDGELOOP_RETENTION_DAYS > 0): drop raw chunks older than {retention}.
SELECT add_retention_policy('features.observations', drop_after => INTERVAL '{retention}');
SELECT add_retention_policy('features.shadow_predictions', drop_after => INTERVAL '{retention}');
SELECT add_retention_policy('features.gateway_samples', drop_after => INTERVAL '{retention}');
