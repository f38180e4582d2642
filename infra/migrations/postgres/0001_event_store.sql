-- The event log, and the few things kept beside it that must not be events.

CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version   bigint NOT NULL CHECK (version >= 1)
);

-- Positions come from reserve_event_positions() below, never from a column default: the
-- reservation is what ties position order to transaction-id order. CACHE 1 (the default)
-- matters: a per-session cache would hand out positions out of order.
CREATE SEQUENCE events_position_seq AS bigint CACHE 1;

CREATE TABLE events (
    position       bigint PRIMARY KEY,
    -- Readers only read below their snapshot's xmin (see read_all), so they see a prefix of
    -- the log even though transactions commit in any order.
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid NOT NULL CONSTRAINT events_event_id_unique UNIQUE,
    stream_id      text NOT NULL REFERENCES streams (stream_id),
    stream_version bigint NOT NULL CHECK (stream_version >= 1),
    event_type     text NOT NULL,
    schema_version integer NOT NULL,
    occurred_at    timestamptz NOT NULL,
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

ALTER SEQUENCE events_position_seq OWNED BY events.position;

-- Gives the calling transaction its id and reserves `n` positions, both under one global lock,
-- so that a transaction that reserves later gets a higher id and higher positions. It must be
-- the transaction's first statement (before anything writes, or the id would be assigned
-- outside the lock).
--
-- The lock is session-level and released before the function returns: it is held for this one
-- statement, not until commit, so commits (and group commit) stay concurrent; a client that
-- disconnects ends its session and so cannot leave it held. The inner block releases it on any
-- error, cancellation included, for a connection that goes back to a pool.
--
-- The key is the ASCII bytes of "identity". `SET search_path FROM CURRENT` pins the sequence
-- to this schema whatever the caller's search_path.
CREATE FUNCTION reserve_event_positions(n integer) RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_advisory_lock(7594306396727374969);
    BEGIN
        PERFORM pg_current_xact_id();
        RETURN QUERY SELECT nextval('events_position_seq') FROM generate_series(1, n);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock(7594306396727374969);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(7594306396727374969);
END
$$;

-- Uniqueness that spans streams (one user per WeChat account, per unionid), written in the
-- same transaction as the events that make the claim.
CREATE TABLE claims (
    kind    text NOT NULL,
    value   text NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (kind, value)
);

CREATE TABLE wechat_session_keys (
    appid      text NOT NULL,
    openid     text NOT NULL,
    sealed     bytea NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (appid, openid)
);

CREATE TABLE signing_keys (
    kid                text PRIMARY KEY,
    sealed_private_key bytea NOT NULL,
    created_at         timestamptz NOT NULL
);
