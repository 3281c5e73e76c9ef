-- The room left on the filesystem holding each gateway's spool, from its samples: once it
-- is gone, robots are answered but their frames are not recorded, so the operators' rule
-- gateway_disk_low (Grafana) warns while a tenth is left. NULL for a sample of a gateway
-- that did not measure it (one before these columns).
ALTER TABLE gateway_samples ADD COLUMN disk_free_bytes bigint;
ALTER TABLE gateway_samples ADD COLUMN disk_total_bytes bigint;
