-- Erasure is atomic: the transaction that appends `UserErased` also deletes the user's data
-- key, so no crash can leave an erased user with a key that still opens their sealed fields,
-- and their refused-login tallies (with client IPs).
CREATE FUNCTION destroy_erased_data_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM user_data_keys WHERE user_id = substring(NEW.stream_id FROM 6)::uuid;
    DELETE FROM login_rejections WHERE user_id = substring(NEW.stream_id FROM 6);
    RETURN NULL;
END
$$;

CREATE TRIGGER user_erased_destroys_data_key AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%')
    EXECUTE FUNCTION destroy_erased_data_key();

-- Erasures recorded before the trigger, interrupted between the event and the key's deletion.
DELETE FROM user_data_keys k
USING events e
WHERE e.event_type = 'UserErased' AND e.stream_id = 'user-' || k.user_id::text;

-- One-time data migrations that ran (`infra::personal_data::migration`): each runs once.
CREATE TABLE one_time_migrations (
    name    text PRIMARY KEY,
    done_at timestamptz NOT NULL
);
