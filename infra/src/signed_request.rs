//! Signed server-to-server requests (the cloud-function login): HMAC-SHA256 under a per-app
//! shared secret over the timestamp, a nonce and the exact body bytes. The timestamp bounds a
//! request's life; the nonce, remembered for that long, makes it single use.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from our clock, either way.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

fn mac(secret: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// `hex(hmac_sha256(secret, "{timestamp}\n{nonce}\n{body}"))`.
pub fn sign(secret: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, nonce, body).finalize().into_bytes())
}

/// Constant-time check of a hex signature.
pub fn verify(secret: &str, timestamp: i64, nonce: &str, body: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature) else {
        return false;
    };
    mac(secret, timestamp, nonce, body)
        .verify_slice(&given)
        .is_ok()
}

/// The bounds of a nonce's length.
pub const MIN_NONCE_LEN: usize = 16;
pub const MAX_NONCE_LEN: usize = 64;

/// A nonce is 16 to 64 characters of `[A-Za-z0-9_-]`.
pub fn valid_nonce(nonce: &str) -> bool {
    (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_every_part() {
        let sig = sign("s3cret", 1_700_000_000, "nonce-0123456789ab", b"{\"a\":1}");
        assert!(verify(
            "s3cret",
            1_700_000_000,
            "nonce-0123456789ab",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify(
            "other",
            1_700_000_000,
            "nonce-0123456789ab",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify(
            "s3cret",
            1_700_000_001,
            "nonce-0123456789ab",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify(
            "s3cret",
            1_700_000_000,
            "nonce-0123456789ac",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify(
            "s3cret",
            1_700_000_000,
            "nonce-0123456789ab",
            b"{\"a\":2}",
            &sig
        ));
        assert!(!verify(
            "s3cret",
            1_700_000_000,
            "nonce-0123456789ab",
            b"{\"a\":1}",
            "zz"
        ));
        assert!(valid_nonce("abcdefghijklmnop"));
        assert!(!valid_nonce("short"));
        assert!(!valid_nonce("has space in it 123"));
    }
}
