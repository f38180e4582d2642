-- An erased user stays keyless: no data key is ever made again for a user whose stream holds
-- `UserErased` (the one-time migration, or a write racing the erasure, would otherwise seal
-- under a fresh key, and a key that exists can be read). The insert is skipped.
CREATE TRIGGER erased_users_stay_keyless BEFORE INSERT ON user_data_keys
WHEN EXISTS (SELECT 1 FROM events
             WHERE stream_id = 'user-' || NEW.user_id AND event_type = 'UserErased')
BEGIN
    SELECT RAISE(IGNORE);
END;
