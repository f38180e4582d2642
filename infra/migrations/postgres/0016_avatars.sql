-- Uploaded avatar images (`POST /v1/me/avatar`, served at `GET /v1/avatars/{avatar_id}`),
-- re-encoded and sealed (AES-GCM) under the owner's data key, bound to the row's id. In the
-- database so that every instance serves them with no other service; sealed so that an
-- erasure, which destroys the key, leaves nothing readable even in a backup. A user keeps one
-- row: an upload deletes the one it replaces, and the transaction that appends `UserErased`
-- deletes the user's rows (below), as the use case does again after it.
CREATE TABLE avatars (
    avatar_id    uuid PRIMARY KEY,
    user_id      uuid NOT NULL,
    content_type text NOT NULL,
    sealed_image bytea NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX avatars_by_user ON avatars (user_id);

CREATE FUNCTION drop_erased_avatars() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM avatars WHERE user_id = substring(NEW.stream_id FROM 6)::uuid;
    RETURN NULL;
END
$$;

CREATE TRIGGER user_erased_drops_avatars AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%')
    EXECUTE FUNCTION drop_erased_avatars();
