-- The registry's state: deployments, devices, the change history, and what MLflow does
-- not keep for us (metrics, holdout evaluation and publication of each version, alias moves).

CREATE TABLE deployments (
    name        text PRIMARY KEY,
    spec        jsonb NOT NULL,          -- the Deployment message's routing fields (JSON mapping)
    active      boolean NOT NULL DEFAULT false,
    revision    bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    device_id         text PRIMARY KEY,
    name              text NOT NULL DEFAULT '',
    token_sha256      bytea NOT NULL,    -- never the token itself
    deployment        text REFERENCES deployments (name),
    created_at        timestamptz NOT NULL DEFAULT now(),
    token_rotated_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);

CREATE INDEX devices_deployment ON devices (deployment);

CREATE TABLE history (
    change_id  bigserial PRIMARY KEY,
    time       timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    subject    text NOT NULL,
    action     text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX history_subject ON history (subject, change_id DESC);

CREATE TABLE model_versions (
    model_name      text NOT NULL,
    version         text NOT NULL,
    run_id          text NOT NULL,
    source          text NOT NULL,
    metrics         jsonb NOT NULL DEFAULT '{}',
    evaluation      jsonb,               -- HoldoutEvaluation (JSON mapping), used by the gate
    published_path  text NOT NULL DEFAULT '',
    tflite_path     text NOT NULL DEFAULT '',
    tflite_error    text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, version)
);

-- Every alias move, so a rollback can return to the version the alias pointed at before.
CREATE TABLE alias_moves (
    move_id           bigserial PRIMARY KEY,
    model_name        text NOT NULL,
    alias             text NOT NULL,
    version           text NOT NULL,
    previous_version  text,
    action            text NOT NULL,
    rolled_back       boolean NOT NULL DEFAULT false,
    time              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX alias_moves_alias ON alias_moves (model_name, alias, move_id DESC);
