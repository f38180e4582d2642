-- An erased user stays keyless: no data key is ever made again for a user whose stream holds
-- `UserErased` (the one-time migration, or a write racing the erasure, would otherwise seal
-- under a fresh key, and a key that exists can be read). The insert is skipped.
CREATE FUNCTION keep_erased_users_keyless() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM events
               WHERE stream_id = 'user-' || NEW.user_id::text AND event_type = 'UserErased') THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER erased_users_stay_keyless BEFORE INSERT ON user_data_keys
    FOR EACH ROW EXECUTE FUNCTION keep_erased_users_keyless();
