-- Per-user data keys for personal data in events (crypto-shredding): each key is sealed under
-- the master key; erasing a user deletes the row, leaving their sealed fields unreadable.
CREATE TABLE user_data_keys (
    user_id    TEXT PRIMARY KEY NOT NULL,
    sealed_key BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
