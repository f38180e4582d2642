-- The keyed hash of each living user's bound phone number, for admin search by phone. It used
-- to be `PhoneNumberBound.phone_index` in the immutable log, where it outlived an erasure and
-- linked the erased person's history to whoever bound the same number next. Here it is
-- written by the append of `PhoneNumberBound` and deleted in the transaction that appends
-- `UserErased` or withdraws the phone. Not unique: two users may bind the same number.
CREATE TABLE phone_lookup (
    user_id     TEXT PRIMARY KEY NOT NULL,
    phone_index TEXT NOT NULL
) STRICT;
CREATE INDEX phone_lookup_by_index ON phone_lookup (phone_index);

CREATE TRIGGER user_erased_drops_phone_lookup AFTER INSERT ON events
WHEN NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%'
BEGIN
    DELETE FROM phone_lookup WHERE user_id = substr(NEW.stream_id, 6);
END;

CREATE TRIGGER phone_withdrawn_drops_phone_lookup AFTER INSERT ON events
WHEN NEW.event_type = 'AuthorizationRevoked' AND NEW.stream_id LIKE 'user-%'
    AND json_extract(NEW.payload, '$.authorization') = 'phone'
BEGIN
    DELETE FROM phone_lookup WHERE user_id = substr(NEW.stream_id, 6);
END;
