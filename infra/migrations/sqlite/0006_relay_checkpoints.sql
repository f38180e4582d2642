-- The NATS relay's progress, one row per JetStream stream it feeds: every event up to
-- `position` is stored in that stream. Moved only after JetStream acknowledged the events.
CREATE TABLE relay_checkpoints (
    name       TEXT PRIMARY KEY NOT NULL,
    position   INTEGER NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
