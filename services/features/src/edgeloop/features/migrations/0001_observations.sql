-- Observations: one row per frame the platform saw, with its image statistics.
-- time is the capture time (the partition column on TimescaleDB, so it is part of the
-- primary key); idempotency on observation_id alone is kept by the ingest statement,
-- which skips ids that exist at any time (the key's leading column serves that lookup).
CREATE TABLE observations (
    observation_id uuid NOT NULL,
    time timestamptz NOT NULL,
    received_at timestamptz,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    device_id text NOT NULL,
    session_id text NOT NULL DEFAULT '',
    seq bigint NOT NULL DEFAULT 0,
    deployment text NOT NULL,
    data_group text NOT NULL DEFAULT '',
    model_name text NOT NULL DEFAULT '',
    model_version text NOT NULL DEFAULT '',
    arm text NOT NULL DEFAULT '',
    prediction_mm real,
    sensor_mm real,
    error_mm real,
    latency_ms real NOT NULL DEFAULT 0,
    trace_id text NOT NULL DEFAULT '',
    traceparent text NOT NULL DEFAULT '',
    late boolean NOT NULL DEFAULT false,
    image_key text NOT NULL,
    image_bytes integer NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    mean_r double precision NOT NULL,
    mean_g double precision NOT NULL,
    mean_b double precision NOT NULL,
    hue double precision NOT NULL,
    saturation double precision NOT NULL,
    brightness double precision NOT NULL,
    contrast double precision NOT NULL,
    sharpness double precision NOT NULL,
    edge_density double precision NOT NULL,
    keypoints integer NOT NULL,
    entropy double precision NOT NULL,
    PRIMARY KEY (observation_id, time)
);

-- Dataset queries and window statistics select by deployment or data group and time.
CREATE INDEX observations_deployment_time ON observations (deployment, time DESC);
CREATE INDEX observations_data_group_time ON observations (data_group, time DESC);

-- Challengers' answers (shadow routing): recorded, never returned to the robot.
CREATE TABLE shadow_predictions (
    observation_id uuid NOT NULL,
    time timestamptz NOT NULL,
    arm text NOT NULL,
    model_name text NOT NULL DEFAULT '',
    model_version text NOT NULL DEFAULT '',
    prediction_mm real NOT NULL,
    PRIMARY KEY (observation_id, arm, time)
);
