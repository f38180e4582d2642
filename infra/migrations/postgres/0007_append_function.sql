-- One append in one call, so an append costs one round trip and one implicit transaction
-- instead of a statement per stream, claim and key plus BEGIN and COMMIT. The store calls it
-- as the transaction's only statement; what it does, in order, is what the earlier
-- statement-by-statement append did:
--
-- 1. reserve the positions (and the transaction id) under the global lock, before any write;
-- 2. bump each stream's version against its expectation, in lock order (streams sorted by
--    id), raising IA001 (DETAIL: the stream) when another writer got there first;
-- 3. insert the events, each numbered back from its stream's new version;
-- 4. release the claims of an erased user, then insert the new claims in sorted order,
--    raising IA002 (DETAIL: the claim's kind) for one held by another user;
-- 5. store the sealed session key.
--
-- Each statement in a plpgsql function takes a new snapshot, so the holder check in 4 sees a
-- rival's committed claim, as before.
CREATE FUNCTION append_events(
    stream_ids text[],
    expectations text[],        -- 'none', 'exactly' or 'any', per stream
    expected_versions bigint[],
    added bigint[],
    event_ids uuid[],
    event_streams text[],
    event_back bigint[],        -- how many of the stream's new events come after this one
    event_types text[],
    schema_versions integer[],
    occurred_ats timestamptz[],
    payloads jsonb[],
    metadatas jsonb[],
    release_user uuid,
    claim_kinds text[],
    claim_values text[],
    claim_owners uuid[],
    key_appid text,
    key_openid text,
    key_sealed bytea
) RETURNS TABLE (event_position bigint, event_stream_version bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    positions bigint[] := '{}';
    versions bigint[];
    touched bigint;
    holder uuid;
BEGIN
    IF cardinality(event_ids) > 0 THEN
        positions := ARRAY(SELECT reserve_event_positions(cardinality(event_ids)));
    END IF;

    FOR i IN 1 .. coalesce(cardinality(stream_ids), 0) LOOP
        IF expectations[i] = 'none' THEN
            INSERT INTO streams (stream_id, version) VALUES (stream_ids[i], added[i])
            ON CONFLICT (stream_id) DO NOTHING;
        ELSIF expectations[i] = 'exactly' THEN
            UPDATE streams SET version = version + added[i]
            WHERE stream_id = stream_ids[i] AND version = expected_versions[i];
        ELSE
            INSERT INTO streams (stream_id, version) VALUES (stream_ids[i], added[i])
            ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version;
        END IF;
        GET DIAGNOSTICS touched = ROW_COUNT;
        IF touched = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'IA001', MESSAGE = 'stream version conflict',
                DETAIL = stream_ids[i];
        END IF;
    END LOOP;

    versions := ARRAY(
        SELECT (SELECT s.version FROM streams s WHERE s.stream_id = u.stream) - u.back
        FROM unnest(event_streams, event_back) WITH ORDINALITY AS u (stream, back, n)
        ORDER BY u.n);
    INSERT INTO events
        (position, event_id, stream_id, stream_version, event_type, schema_version,
         occurred_at, payload, metadata)
    SELECT * FROM unnest(positions, event_ids, event_streams, versions, event_types,
                         schema_versions, occurred_ats, payloads, metadatas);

    IF release_user IS NOT NULL THEN
        DELETE FROM claims WHERE user_id = release_user;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(claim_kinds), 0) LOOP
        INSERT INTO claims (kind, value, user_id)
        VALUES (claim_kinds[i], claim_values[i], claim_owners[i])
        ON CONFLICT (kind, value) DO NOTHING;
        GET DIAGNOSTICS touched = ROW_COUNT;
        IF touched = 0 THEN
            SELECT c.user_id INTO holder FROM claims c
            WHERE c.kind = claim_kinds[i] AND c.value = claim_values[i];
            IF holder IS DISTINCT FROM claim_owners[i] THEN
                RAISE EXCEPTION USING ERRCODE = 'IA002', MESSAGE = 'claim already held',
                    DETAIL = claim_kinds[i];
            END IF;
        END IF;
    END LOOP;

    IF key_appid IS NOT NULL THEN
        INSERT INTO wechat_session_keys (appid, openid, sealed, updated_at)
        VALUES (key_appid, key_openid, key_sealed, now())
        ON CONFLICT (appid, openid)
        DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at;
    END IF;

    RETURN QUERY SELECT u.p, u.v FROM unnest(positions, versions) AS u (p, v);
END
$$;
