-- Drift events written by the drift monitor (issue #7); created now so the schema is whole.
CREATE TABLE drift_events (
    event_id uuid PRIMARY KEY,
    rule text NOT NULL,
    kind text NOT NULL,
    deployment text NOT NULL,
    model_name text NOT NULL DEFAULT '',
    model_version text NOT NULL DEFAULT '',
    state text NOT NULL CHECK (state IN ('open', 'resolved')),
    "values" jsonb NOT NULL DEFAULT '{}',
    threshold text NOT NULL DEFAULT '',
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    fired_at timestamptz NOT NULL,
    resolved_at timestamptz,
    sweep_id text NOT NULL DEFAULT '',
    sweep_trace_id text NOT NULL DEFAULT '',
    note text NOT NULL DEFAULT ''
);

CREATE INDEX drift_events_deployment_fired ON drift_events (deployment, fired_at DESC);
CREATE INDEX drift_events_open ON drift_events (rule, deployment) WHERE state = 'open';
