-- Sessions of the admin console (`/console`): an API key (or the bootstrap token) exchanged
-- once for a cookie. Only a SHA-256 of the session token is kept (the token is 256 random
-- bits: a fast hash suffices, and a copy of this table signs no one in). The CSRF token is
-- derived from the session token (HMAC), so it is not stored either. `bootstrap_check` is an
-- HMAC of the bootstrap token under the session token, for sessions of `IDENTITY_ADMIN_TOKEN`
-- (key id `bootstrap`): a session ends when that token changes. Bounded: expired rows are
-- deleted at each sign-in, and a key keeps its newest 16 sessions.
CREATE TABLE console_sessions (
    token_hash      bytea PRIMARY KEY,
    key_id          text NOT NULL,
    scopes          text NOT NULL,
    bootstrap_check bytea,
    created_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL
);
CREATE INDEX console_sessions_by_key ON console_sessions (key_id, created_at);
CREATE INDEX console_sessions_by_last_seen ON console_sessions (last_seen_at);
CREATE INDEX console_sessions_by_created ON console_sessions (created_at);
