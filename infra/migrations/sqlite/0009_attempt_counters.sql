-- Attempts per subject in fixed windows (e.g. decryptions of WeChat's encrypted user data per
-- user and per session key): a cap that holds across instances. One row per subject; a row of
-- an ended window is reset when counted again and deleted by later counts.
CREATE TABLE attempt_counters (
    subject      TEXT PRIMARY KEY NOT NULL,
    window_start INTEGER NOT NULL,
    attempts     INTEGER NOT NULL
) STRICT;
CREATE INDEX attempt_counters_window ON attempt_counters (window_start);
