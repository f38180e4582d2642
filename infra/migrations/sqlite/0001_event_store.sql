-- The event log, and the few things kept beside it that must not be events. Ids (uuid) are
-- stored as hyphenated lowercase text, times as RFC 3339 UTC text with microseconds (which
-- sorts in time order), JSON as text.

CREATE TABLE streams (
    stream_id TEXT PRIMARY KEY NOT NULL,
    version   INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- Writers are serialised (BEGIN IMMEDIATE on a single write connection), so positions follow
-- commit order. AUTOINCREMENT: a position is never reused.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    stream_id      TEXT NOT NULL REFERENCES streams (stream_id),
    stream_version INTEGER NOT NULL CHECK (stream_version >= 1),
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at    TEXT NOT NULL,
    payload        TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    UNIQUE (stream_id, stream_version)
) STRICT;

CREATE TABLE claims (
    kind    TEXT NOT NULL,
    value   TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (kind, value)
) STRICT;

CREATE TABLE wechat_session_keys (
    appid      TEXT NOT NULL,
    openid     TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (appid, openid)
) STRICT;

CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY NOT NULL,
    sealed_private_key BLOB NOT NULL,
    created_at         TEXT NOT NULL
) STRICT;
