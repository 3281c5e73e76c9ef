-- The robots streaming to each gateway whose clock is off its gateway's, from its samples:
-- their frames land in the wrong drift windows, rollups and days, so the operators' rule
-- robot_clock_off (Grafana) names the gateway. 0 from a gateway before these columns;
-- worst_clock_offset_s (negative: behind) is NULL when none is off.
ALTER TABLE gateway_samples ADD COLUMN robots_clock_off integer NOT NULL DEFAULT 0;
ALTER TABLE gateway_samples ADD COLUMN worst_clock_offset_s double precision;
