-- A client's key for a StartSweep (request_id): a retried call finds the sweep it queued.
ALTER TABLE sweeps ADD COLUMN request_id text;
CREATE UNIQUE INDEX sweeps_request_id ON sweeps (request_id) WHERE request_id IS NOT NULL;
