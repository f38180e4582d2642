-- Refused logins, tallied (not events: anonymous callers must not grow the log). One row per
-- app, UTC day, reason, client IP ('' unknown, '*' folded once the app's day is full) and user
-- ('' none; a blocked user's id, so erasure deletes it). Days past the retention are deleted.
-- `id` gives each row a stable place in the audit list. Times are Unix microseconds. A row with
-- an address takes one of the app's day's `slot`s (0 to the cap - 1, unique), so concurrent
-- writers on several instances cannot overshoot the cap; folded rows have none.
CREATE TABLE login_rejections (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    appid     TEXT NOT NULL,
    day       TEXT NOT NULL,
    reason    TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    slot      BIGINT,
    attempts  BIGINT NOT NULL,
    first_at  BIGINT NOT NULL,
    last_at   BIGINT NOT NULL,
    UNIQUE (appid, day, reason, client_ip, user_id),
    UNIQUE (appid, day, slot)
);
CREATE INDEX login_rejections_day ON login_rejections (day);
CREATE INDEX login_rejections_time ON login_rejections (first_at, id);
CREATE INDEX login_rejections_user ON login_rejections (user_id) WHERE user_id <> '';
