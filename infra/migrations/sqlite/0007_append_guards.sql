-- Lets an append sent to SQLite as one multi-statement script refuse itself part-way: the
-- script inserts a row after each check (`ok` = 1 when the check held), the trigger aborts the
-- statement on a failed check and otherwise drops the row. Nothing is ever stored here.
CREATE TABLE append_guards (
    guard TEXT NOT NULL,
    ok    INTEGER NOT NULL
) STRICT;

CREATE TRIGGER append_guards_check BEFORE INSERT ON append_guards
BEGIN
    SELECT RAISE(ABORT, 'append guard failed') WHERE NEW.ok = 0;
    SELECT RAISE(IGNORE);
END;
