-- Erasing a user releases every claim they hold (`DELETE FROM claims WHERE user_id = …` in
-- the append script): without this index that is a scan of every claim while the one writer
-- waits.
CREATE INDEX claims_by_user ON claims (user_id);
