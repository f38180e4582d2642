-- Group commit, set-based: 0017's function with a fast path in front. When the group has more
-- than one batch, no two batches touch one stream and none releases claims, the batches'
-- stream and event writes cannot depend on each other, so the whole group is tried with one
-- statement per table (from `unnest` of the arrays the function already takes) inside one
-- subtransaction, instead of one statement per stream, claim and side write per batch, each
-- batch in a subtransaction of its own and each array sliced per batch (BENCHMARKS.md, "The
-- budget now").
--
-- The fast path commits only when every batch would have. Any refusal (a stream moved, a claim
-- held, two batches claiming one key for different users) or error (a row lock not granted
-- within `lock_timeout`, two batches writing one session key) undoes its subtransaction, and
-- the group goes through 0017's per-batch path, which refuses the offending batch alone and
-- reports why; a group held up by an outside row lock so waits `lock_timeout` twice. Its
-- result rows are what the per-batch path returns (each event's batch, position and version;
-- positions in batch order from the one reservation), so callers cannot tell which path ran.
--
-- Everything outside the fast path's `IF` block is 0017's body, copied as it was (CREATE OR
-- REPLACE takes the whole function), and 0017's header still describes it. A later change to
-- the function starts from this file.
CREATE OR REPLACE FUNCTION append_event_batches(
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
    fast boolean := false;
    all_versions bigint[];
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

    -- Every batch at once, set-based, when no two batches touch one stream and none releases
    -- claims, so no batch can see another's writes. One subtransaction for the group; any
    -- refusal or error undoes it, and the batches go one by one below.
    IF coalesce(cardinality(stream_ends), 0) > 1
       AND NOT EXISTS (SELECT 1 FROM unnest(release_users) r WHERE r IS NOT NULL)
       AND (SELECT count(DISTINCT s) FROM unnest(stream_ids) s) = cardinality(stream_ids)
    THEN
        BEGIN
            INSERT INTO streams (stream_id, version)
            SELECT u.id, u.n FROM unnest(stream_ids, expectations, added) AS u (id, e, n)
            WHERE u.e = 'none'
            ON CONFLICT (stream_id) DO NOTHING;
            GET DIAGNOSTICS touched = ROW_COUNT;
            IF touched <> (SELECT count(*) FROM unnest(expectations) e WHERE e = 'none') THEN
                RAISE EXCEPTION USING ERRCODE = 'IA001';
            END IF;
            UPDATE streams s SET version = s.version + u.n
            FROM unnest(stream_ids, expectations, expected_versions, added) AS u (id, e, v, n)
            WHERE u.e = 'exactly' AND s.stream_id = u.id AND s.version = u.v;
            GET DIAGNOSTICS touched = ROW_COUNT;
            IF touched <> (SELECT count(*) FROM unnest(expectations) e WHERE e = 'exactly') THEN
                RAISE EXCEPTION USING ERRCODE = 'IA001';
            END IF;
            INSERT INTO streams (stream_id, version)
            SELECT u.id, u.n FROM unnest(stream_ids, expectations, added) AS u (id, e, n)
            WHERE u.e = 'any'
            ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version;

            all_versions := ARRAY(
                SELECT (SELECT s.version FROM streams s WHERE s.stream_id = u.stream) - u.back
                FROM unnest(event_streams, event_back) WITH ORDINALITY AS u (stream, back, k)
                ORDER BY u.k);
            INSERT INTO events
                (position, event_id, stream_id, stream_version, event_type, schema_version,
                 occurred_at, payload, metadata)
            SELECT * FROM unnest(positions, event_ids, event_streams, all_versions, event_types,
                                 schema_versions, occurred_ats, payloads, metadatas);

            INSERT INTO claims (kind, value, user_id)
            SELECT * FROM unnest(claim_kinds, claim_values, claim_owners)
            ON CONFLICT (kind, value) DO NOTHING;
            -- Each claim must now be its owner's. Not a join on the claims found: `DO NOTHING`
            -- locks no row it skipped, so another user's claim can be deleted (an erasure)
            -- between the insert and this check, and a missing row must refuse as the per-batch
            -- path's look-up does, not pass.
            IF EXISTS (SELECT 1 FROM unnest(claim_kinds, claim_values, claim_owners) AS u (k, v, o)
                       WHERE NOT EXISTS (SELECT 1 FROM claims c
                                         WHERE c.kind = u.k AND c.value = u.v
                                           AND c.user_id = u.o)) THEN
                RAISE EXCEPTION USING ERRCODE = 'IA002';
            END IF;

            INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at)
            SELECT u.a, u.o, u.s, now()
            FROM unnest(session_key_appids, session_key_openids, session_key_sealeds) AS u (a, o, s)
            WHERE u.a IS NOT NULL
            ON CONFLICT (appid, openid)
            DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at;

            INSERT INTO user_data_keys (user_id, sealed_key, created_at)
            SELECT d.u, d.k, now() FROM unnest(data_key_users, data_key_sealeds) AS d (u, k)
            WHERE d.u IS NOT NULL;
            fast := true;
        EXCEPTION WHEN OTHERS THEN
            fast := false;
        END;
        IF fast THEN
            RETURN QUERY
                SELECT (SELECT min(b)::integer FROM generate_subscripts(event_ends, 1) AS b
                        WHERE event_ends[b] >= u.k),
                       u.p, u.v, NULL::text, NULL::text, NULL::text, NULL::text
                FROM unnest(positions, all_versions) WITH ORDINALITY AS u (p, v, k)
                ORDER BY u.k;
            RETURN;
        END IF;
    END IF;

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
