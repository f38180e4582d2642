-- `identityd keys retire <kid>`: a retired key neither signs, verifies nor is published.
-- The row stays (audit; the schedule of the other keys is computed over every row).
ALTER TABLE signing_keys ADD COLUMN retired_at TEXT;
