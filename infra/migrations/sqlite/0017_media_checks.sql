-- Asynchronous image checks submitted to WeChat (`media_check_async`), waiting for the verdict
-- WeChat pushes to `POST /v1/wechat/push/{appid}` naming the trace id. Bounded: at most one per
-- user (a new upload replaces the previous one), rows older than the purge horizon are deleted
-- at each new submission, a handled verdict deletes its row, and the append of `UserErased`
-- deletes the user's (below). `created_at` in Unix seconds.
CREATE TABLE media_checks (
    trace_id   TEXT PRIMARY KEY NOT NULL,
    appid      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    avatar_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX media_checks_by_user ON media_checks (user_id);
CREATE INDEX media_checks_by_age ON media_checks (created_at);

CREATE TRIGGER user_erased_drops_media_checks AFTER INSERT ON events
WHEN NEW.event_type = 'UserErased' AND NEW.stream_id LIKE 'user-%'
BEGIN
    DELETE FROM media_checks WHERE user_id = substr(NEW.stream_id, 6);
END;
