-- Which observations each dataset snapshot holds (lineage: observation -> sweeps).
CREATE TABLE snapshot_observations (
    observation_id  text NOT NULL,
    snapshot_id     text NOT NULL,
    PRIMARY KEY (observation_id, snapshot_id)
);
