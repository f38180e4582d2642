-- API keys for admins and analytics. Only a keyed hash of the secret is kept; the key itself
-- is shown once, when created.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    secret_hash bytea NOT NULL,
    -- Space-separated scopes, e.g. 'admin:read events:read'.
    scopes      text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
