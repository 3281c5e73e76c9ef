-- Operators: people and programs with a registry token of their own, so that the history
-- records a change as made by `operator:<name>` (the token's identity) rather than by
-- whatever name the caller declared. Like device tokens, only the SHA-256 is stored.
-- A name is never reused (revoked rows stay), so `operator:<name>` in the history always
-- means the same operator.
CREATE TABLE operators (
    name              text PRIMARY KEY,
    role              text NOT NULL CHECK (role IN ('admin', 'read')),
    token_sha256      bytea NOT NULL,    -- never the token itself
    created_at        timestamptz NOT NULL DEFAULT now(),
    token_rotated_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);

CREATE UNIQUE INDEX operators_token ON operators (token_sha256);
