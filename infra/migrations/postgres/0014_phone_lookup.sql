-- The keyed hash of each living user's bound phone number, for admin search by phone. It used
-- to be `PhoneNumberBound.phone_index` in the immutable log, where it outlived an erasure and
-- linked the erased person's history to whoever bound the same number next. Here it is
-- written by the append of `PhoneNumberBound` and deleted in the transaction that appends
-- `UserErased` or withdraws the phone. Not unique: two users may bind the same number.
CREATE TABLE phone_lookup (
    user_id     uuid PRIMARY KEY,
    phone_index text NOT NULL
);
CREATE INDEX phone_lookup_by_index ON phone_lookup (phone_index);

CREATE FUNCTION drop_phone_lookup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM phone_lookup WHERE user_id = substring(NEW.stream_id FROM 6)::uuid;
    RETURN NULL;
END
$$;

CREATE TRIGGER user_erased_drops_phone_lookup AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%')
    EXECUTE FUNCTION drop_phone_lookup();

CREATE TRIGGER phone_withdrawn_drops_phone_lookup AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.event_type = 'AuthorizationRevoked' AND NEW.stream_id LIKE 'user-%'
                       AND NEW.payload->>'authorization' = 'phone')
    EXECUTE FUNCTION drop_phone_lookup();
