-- The keyring: the keys every master-derived subkey comes from, each sealed under the master
-- key (`IDENTITY_MASTER_KEY`). Rotating the master key re-wraps these rows and nothing else.
CREATE TABLE keyring (
    name       TEXT PRIMARY KEY NOT NULL,
    sealed_key BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
