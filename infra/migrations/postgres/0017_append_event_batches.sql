-- Group commit: several appends ("batches") in one call, so concurrent logins share one
-- statement, one transaction and one WAL flush instead of paying one each. The store's append
-- writer sends whatever queued while its previous call was in flight (see
-- `infra/src/store/postgres/group.rs`).
--
-- Each batch does what `append_events` (0007) does for one append, inside its own
-- `BEGIN … EXCEPTION` block (a subtransaction): a batch whose stream moved (IA001), whose claim
-- is held (IA002) or that fails otherwise is undone alone and reported in its own row, and the
-- other batches commit. The store caps a group at 32 batches, under PostgreSQL's 64 cached
-- subtransaction ids per transaction, past which every snapshot taken meanwhile gets slower.
--
-- Positions are reserved once, for every event of every batch, as the call's first statement
-- (the ordering rule of 0001/0007: the transaction id and the positions under one lock). A
-- batch takes the next unused reserved positions only when it commits, so a refused batch
-- leaves no hole between its neighbours; the positions left over after the last batch are a
-- gap, as a rolled-back append always left one.
--
-- Batches are cut from flat arrays by their cumulative ends: batch b owns streams
-- `stream_ends[b-1]+1 .. stream_ends[b]`, and likewise events and claims. The per-batch
-- arguments (released user, session key, data key) hold NULL for none.
--
-- A new user's data key is a plain insert: a duplicate is an error (the batch is refused),
-- never a silent overwrite. For an erased user the insert is skipped by the trigger of 0015,
-- so an erased user stays keyless.
CREATE FUNCTION append_event_batches(
    stream_ends integer[],
    event_ends integer[],
    claim_ends integer[],
    stream_ids text[],
    expectations text[],        -- 'none', 'exactly' or 'any', per stream
    expected_versions bigint[],
    added bigint[],
    event_ids uuid[],
    event_streams text[],
    event_back bigint[],        -- how many of the stream's new events in the batch follow it
    event_types text[],
    schema_versions integer[],
    occurred_ats timestamptz[],
    payloads jsonb[],
    metadatas jsonb[],
    release_users uuid[],
    claim_kinds text[],
    claim_values text[],
    claim_owners uuid[],
    session_key_appids text[],
    session_key_openids text[],
    session_key_sealeds bytea[],
    data_key_users uuid[],
    data_key_sealeds bytea[]
) RETURNS TABLE (
    batch integer,
    event_position bigint,
    event_stream_version bigint,
    refusal_code text,
    refusal_message text,
    refusal_detail text,
    refusal_constraint text
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    positions bigint[] := '{}';
    used integer := 0;          -- reserved positions taken by the batches committed so far
    versions bigint[];
    touched bigint;
    holder uuid;
    s0 integer := 0;
    e0 integer := 0;
    c0 integer := 0;
    n integer;
    written boolean;
    err_code text;
    err_message text;
    err_detail text;
    err_constraint text;
BEGIN
    IF cardinality(event_ids) > 0 THEN
        positions := ARRAY(SELECT reserve_event_positions(cardinality(event_ids)));
    END IF;
    -- A group holds the row locks of the batches it wrote until it commits, and takes each
    -- batch's in arrival order: two instances' groups can wait on each other (a deadlock,
    -- found only after `deadlock_timeout`, 1 s), and one outside lock holder stalls every
    -- batch behind it. A batch that waits longer than this for a row lock is refused alone
    -- (55P03, a conflict its caller retries), and the group goes on. Set after the
    -- reservation, whose lock is the ordering rule's and must be waited for.
    PERFORM set_config('lock_timeout', '200ms', true);

    FOR b IN 1 .. coalesce(cardinality(stream_ends), 0) LOOP
        n := event_ends[b] - e0;
        BEGIN
            FOR i IN s0 + 1 .. stream_ends[b] LOOP
                IF expectations[i] = 'none' THEN
                    INSERT INTO streams (stream_id, version) VALUES (stream_ids[i], added[i])
                    ON CONFLICT (stream_id) DO NOTHING;
                ELSIF expectations[i] = 'exactly' THEN
                    UPDATE streams SET version = version + added[i]
                    WHERE stream_id = stream_ids[i] AND version = expected_versions[i];
                ELSE
                    INSERT INTO streams (stream_id, version) VALUES (stream_ids[i], added[i])
                    ON CONFLICT (stream_id)
                    DO UPDATE SET version = streams.version + EXCLUDED.version;
                END IF;
                GET DIAGNOSTICS touched = ROW_COUNT;
                IF touched = 0 THEN
                    RAISE EXCEPTION USING ERRCODE = 'IA001',
                        MESSAGE = 'stream version conflict', DETAIL = stream_ids[i];
                END IF;
            END LOOP;

            versions := ARRAY(
                SELECT (SELECT s.version FROM streams s WHERE s.stream_id = u.stream) - u.back
                FROM unnest(event_streams[e0 + 1 : e0 + n], event_back[e0 + 1 : e0 + n])
                     WITH ORDINALITY AS u (stream, back, k)
                ORDER BY u.k);
            INSERT INTO events
                (position, event_id, stream_id, stream_version, event_type, schema_version,
                 occurred_at, payload, metadata)
            SELECT * FROM unnest(positions[used + 1 : used + n], event_ids[e0 + 1 : e0 + n],
                                 event_streams[e0 + 1 : e0 + n], versions,
                                 event_types[e0 + 1 : e0 + n], schema_versions[e0 + 1 : e0 + n],
                                 occurred_ats[e0 + 1 : e0 + n], payloads[e0 + 1 : e0 + n],
                                 metadatas[e0 + 1 : e0 + n]);

            IF release_users[b] IS NOT NULL THEN
                DELETE FROM claims WHERE user_id = release_users[b];
            END IF;
            FOR i IN c0 + 1 .. claim_ends[b] LOOP
                INSERT INTO claims (kind, value, user_id)
                VALUES (claim_kinds[i], claim_values[i], claim_owners[i])
                ON CONFLICT (kind, value) DO NOTHING;
                GET DIAGNOSTICS touched = ROW_COUNT;
                IF touched = 0 THEN
                    SELECT c.user_id INTO holder FROM claims c
                    WHERE c.kind = claim_kinds[i] AND c.value = claim_values[i];
                    IF holder IS DISTINCT FROM claim_owners[i] THEN
                        RAISE EXCEPTION USING ERRCODE = 'IA002',
                            MESSAGE = 'claim already held', DETAIL = claim_kinds[i];
                    END IF;
                END IF;
            END LOOP;

            IF session_key_appids[b] IS NOT NULL THEN
                INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at)
                VALUES (session_key_appids[b], session_key_openids[b], session_key_sealeds[b], now())
                ON CONFLICT (appid, openid)
                DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at;
            END IF;

            IF data_key_users[b] IS NOT NULL THEN
                INSERT INTO user_data_keys (user_id, sealed_key, created_at)
                VALUES (data_key_users[b], data_key_sealeds[b], now());
            END IF;
            written := true;
        EXCEPTION WHEN OTHERS THEN
            -- Not `query_canceled`: a cancelled call fails as a whole.
            GET STACKED DIAGNOSTICS err_code = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
                err_detail = PG_EXCEPTION_DETAIL, err_constraint = CONSTRAINT_NAME;
            written := false;
        END;

        -- Rows go out only after the block: a result row is not undone with a subtransaction.
        IF written THEN
            RETURN QUERY SELECT b, u.p, u.v, NULL::text, NULL::text, NULL::text, NULL::text
                FROM unnest(positions[used + 1 : used + n], versions) AS u (p, v);
            used := used + n;
        ELSE
            RETURN QUERY SELECT b, NULL::bigint, NULL::bigint, err_code, err_message,
                nullif(err_detail, ''), nullif(err_constraint, '');
        END IF;
        s0 := stream_ends[b];
        e0 := event_ends[b];
        c0 := claim_ends[b];
    END LOOP;
END
$$;
