-- Nonces of signed server-to-server requests (cloud-function login), kept until their
-- timestamp leaves the acceptance window: a replayed request finds its nonce here.
CREATE TABLE request_nonces (
    scope      TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (scope, nonce)
) STRICT;
CREATE INDEX request_nonces_expiry ON request_nonces (expires_at);
