-- Erasure is atomic: the transaction that appends `UserErased` also deletes the user's data
-- key, so no crash can leave an erased user with a key that still opens their sealed fields,
-- and their refused-login tallies (with client IPs).
CREATE TRIGGER user_erased_destroys_data_key AFTER INSERT ON events
WHEN NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%'
BEGIN
    DELETE FROM user_data_keys WHERE user_id = substr(NEW.stream_id, 6);
    DELETE FROM login_rejections WHERE user_id = substr(NEW.stream_id, 6);
END;

-- Erasures recorded before the trigger, interrupted between the event and the key's deletion.
DELETE FROM user_data_keys
WHERE 'user-' || user_id IN (SELECT stream_id FROM events WHERE event_type = 'UserErased');

-- One-time data migrations that ran (`infra::personal_data::migration`): each runs once.
CREATE TABLE one_time_migrations (
    name    TEXT PRIMARY KEY NOT NULL,
    done_at TEXT NOT NULL
) STRICT;
