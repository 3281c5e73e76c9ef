-- RegisterModelVersion's request_id: a retried registration (its answer was lost, or the
-- registry was unreachable when the caller sent it again) finds the version the first
-- attempt registered instead of registering the same model twice.
ALTER TABLE model_versions ADD COLUMN request_id text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX model_versions_request_id ON model_versions (model_name, request_id)
    WHERE request_id <> '';
