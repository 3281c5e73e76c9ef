-- Gateways' periodic samples of their spool, recording and robots (RecordGatewaySamples):
-- the history behind Grafana's Infrastructure panels of the spool and the robots streaming.
-- One row per gateway process and sample time, so a sample sent again is stored once.
CREATE TABLE gateway_samples (
    time timestamptz NOT NULL,
    gateway_id text NOT NULL,
    backlog_bytes bigint NOT NULL,
    max_bytes bigint NOT NULL,
    recording text NOT NULL,
    robots_streaming integer NOT NULL,
    streams_open integer NOT NULL,
    frames_per_s double precision NOT NULL,
    not_recorded_per_s double precision NOT NULL,
    PRIMARY KEY (gateway_id, time)
);
