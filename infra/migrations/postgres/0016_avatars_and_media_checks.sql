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

-- Asynchronous image checks submitted to WeChat (`media_check_async`), waiting for the verdict
-- WeChat pushes to `POST /v1/wechat/push/{appid}` naming the trace id. Bounded: a new
-- submission deletes the user's checks of images no longer stored, rows older than the purge horizon are deleted
-- at each new submission, a handled verdict deletes its row, and the append of `UserErased`
-- deletes the user's (below). `created_at` in Unix seconds.
CREATE TABLE media_checks (
    trace_id   text PRIMARY KEY,
    appid      text NOT NULL,
    user_id    uuid NOT NULL,
    avatar_id  uuid NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX media_checks_by_user ON media_checks (user_id);
CREATE INDEX media_checks_by_age ON media_checks (created_at);

-- The append of `UserErased` deletes the user's avatar images and pending image checks.
CREATE FUNCTION drop_erased_avatars() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    erased uuid := substring(NEW.stream_id FROM 6)::uuid;
BEGIN
    DELETE FROM avatars WHERE user_id = erased;
    DELETE FROM media_checks WHERE user_id = erased;
    RETURN NULL;
END
$$;

CREATE TRIGGER user_erased_drops_avatars AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%')
    EXECUTE FUNCTION drop_erased_avatars();
