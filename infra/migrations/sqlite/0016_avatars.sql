-- Uploaded avatar images (`POST /v1/me/avatar`, served at `GET /v1/avatars/{avatar_id}`),
-- re-encoded and sealed (AES-GCM) under the owner's data key, bound to the row's id. In the
-- database so that every instance serves them with no other service; sealed so that an
-- erasure, which destroys the key, leaves nothing readable even in a backup. A user keeps one
-- row: an upload deletes the one it replaces, and the transaction that appends `UserErased`
-- deletes the user's rows (below), as the use case does again after it.
CREATE TABLE avatars (
    avatar_id    TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    content_type TEXT NOT NULL,
    sealed_image BLOB NOT NULL,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX avatars_by_user ON avatars (user_id);

CREATE TRIGGER user_erased_drops_avatars AFTER INSERT ON events
WHEN NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%'
BEGIN
    DELETE FROM avatars WHERE user_id = substr(NEW.stream_id, 6);
END;
