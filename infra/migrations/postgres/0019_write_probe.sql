-- One row that readiness writes while the store's writes are failing for want of the
-- database (a full disk): the write that finds out that they work again, even when no
-- request writes (an instance out of rotation gets none). See `store::write_health`.
CREATE TABLE write_probe (
    id        integer PRIMARY KEY CHECK (id = 1),
    probed_at timestamptz NOT NULL,
    -- As much as a login writes, and more: a write this big that fits, a login fits too.
    filler    bytea NOT NULL
);
