-- The signing keys' schedule, stored so every instance follows the same times:
-- activates_at: when the key starts signing (the database's clock at insert + 30 s, the
--   longest reload interval); NULL for keys made before this migration (created_at + the
--   instance's reload interval, as before).
-- retire_after: when the key leaves the JWKS and stops verifying, set when the next key is
--   added (its activates_at + the adding host's token TTL + 60 s); NULL until then.
-- retired_at: `identityd keys retire <kid>`: the key neither signs, verifies nor is published.
-- Rows stay (audit; the schedule is computed over every row).
ALTER TABLE signing_keys ADD COLUMN activates_at timestamptz;
ALTER TABLE signing_keys ADD COLUMN retire_after timestamptz;
ALTER TABLE signing_keys ADD COLUMN retired_at timestamptz;
