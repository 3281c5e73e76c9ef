-- Sweeps, their progress events and the Grafana notifications that started sweeps.
CREATE TABLE sweeps (
    sweep_id    text PRIMARY KEY,
    model_name  text NOT NULL,
    state       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- the edgeloop.trainer.v1.Sweep message as JSON (json_format), the source of truth
    sweep       jsonb NOT NULL,
    -- the StartSweepRequest as JSON, kept to run a queued sweep after a restart
    request     jsonb NOT NULL
);
CREATE INDEX sweeps_model_state ON sweeps (model_name, state, created_at);
CREATE INDEX sweeps_created ON sweeps (created_at DESC);

CREATE TABLE sweep_events (
    seq       bigserial PRIMARY KEY,
    sweep_id  text NOT NULL REFERENCES sweeps (sweep_id) ON DELETE CASCADE,
    time      timestamptz NOT NULL DEFAULT now(),
    event     jsonb NOT NULL
);
CREATE INDEX sweep_events_sweep ON sweep_events (sweep_id, seq);

CREATE TABLE grafana_alerts (
    fingerprint  text NOT NULL,
    starts_at    text NOT NULL,
    alertname    text NOT NULL,
    sweep_id     text REFERENCES sweeps (sweep_id) ON DELETE SET NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, starts_at)
);
