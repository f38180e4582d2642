-- Asynchronous image checks submitted to WeChat (`media_check_async`), waiting for the verdict
-- WeChat pushes to `POST /v1/wechat/push/{appid}` naming the trace id. Bounded: at most one per
-- user (a new upload replaces the previous one), rows older than the purge horizon are deleted
-- at each new submission, a handled verdict deletes its row, and the append of `UserErased`
-- deletes the user's (below). `created_at` in Unix seconds.
CREATE TABLE media_checks (
    trace_id   text PRIMARY KEY,
    appid      text NOT NULL,
    user_id    uuid NOT NULL,
    avatar_id  text NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX media_checks_by_user ON media_checks (user_id);
CREATE INDEX media_checks_by_age ON media_checks (created_at);

CREATE FUNCTION drop_media_checks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM media_checks WHERE user_id = substring(NEW.stream_id FROM 6)::uuid;
    RETURN NULL;
END
$$;

CREATE TRIGGER user_erased_drops_media_checks AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%')
    EXECUTE FUNCTION drop_media_checks();
