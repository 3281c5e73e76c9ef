-- Dead letters: observations Ingest refused, kept whole (JPEG included) so that nothing a
-- robot was answered for is lost; operators list and replay them (issue 16).
-- One row per distinct payload: the same refused observation sent again (a gateway
-- replaying its spool after a crash) counts another attempt instead of another row.
CREATE TABLE dead_letters (
    dead_letter_id bigserial PRIMARY KEY,
    observation_id text NOT NULL,
    payload_sha256 bytea NOT NULL,
    device_id text NOT NULL DEFAULT '',
    deployment text NOT NULL DEFAULT '',
    reason text NOT NULL,
    first_refused_at timestamptz NOT NULL DEFAULT now(),
    last_refused_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 1,
    observation bytea NOT NULL,
    UNIQUE (observation_id, payload_sha256)
);

CREATE INDEX dead_letters_last_refused ON dead_letters (last_refused_at DESC);
