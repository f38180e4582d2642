-- API keys for admins and analytics. Only a keyed hash of the secret is kept; the key itself
-- is shown once, when created.
CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY NOT NULL,
    secret_hash BLOB NOT NULL,
    -- Space-separated scopes, e.g. 'admin:read events:read'.
    scopes      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;
