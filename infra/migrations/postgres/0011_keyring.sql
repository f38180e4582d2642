-- The keyring: the keys every master-derived subkey comes from, each sealed under the master
-- key (`IDENTITY_MASTER_KEY`). Rotating the master key re-wraps these rows and nothing else.
CREATE TABLE keyring (
    name       text PRIMARY KEY,
    sealed_key bytea NOT NULL,
    created_at timestamptz NOT NULL
);
