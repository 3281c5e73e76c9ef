-- Where each prediction was computed (issue #14): 'server' (the model host) or 'device'
-- (the robot's own LiteRT model); '' for a frame without a prediction, and for rows
-- recorded before sources were kept (those were all served). A device prediction is
-- otherwise an ordinary row: same prediction_mm, error_mm and model_version, so drift
-- rules, dataset snapshots and lineage treat it exactly like a served one.
ALTER TABLE observations ADD COLUMN prediction_source text NOT NULL DEFAULT ''
    CHECK (prediction_source IN ('', 'server', 'device'));
-- The server's shadow prediction of a device-predicted frame, when the deployment asks
-- for one (Deployment.device_shadow): device/server agreement is prediction_mm minus this.
ALTER TABLE observations ADD COLUMN server_shadow_mm real;
ALTER TABLE observations ADD COLUMN server_shadow_model_version text NOT NULL DEFAULT '';
