//! Refresh tokens (`POST /v1/token/refresh`, `POST /v1/logout`): any text a client sends is
//! read without panicking, bytes behind the `rt1.` prefix reach the length and MAC checks, and
//! an issued token always verifies to what it was issued for.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use domain::SessionId;
use infra::crypto::MasterKey;
use infra::tokens::RefreshTokens;
use libfuzzer_sys::fuzz_target;

fn tokens() -> &'static RefreshTokens {
    static TOKENS: OnceLock<RefreshTokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let master = MasterKey::from_base64(&STANDARD.encode([7u8; 32]))
            .expect("32 bytes make a master key");
        RefreshTokens::new(&master)
    })
}

fuzz_target!(|data: &[u8]| {
    let tokens = tokens();
    let _ = tokens.verify(&String::from_utf8_lossy(data));
    let _ = tokens.verify(&format!("rt1.{}", URL_SAFE_NO_PAD.encode(data)));
    if let Some((session, rest)) = data.split_first_chunk::<16>() {
        let generation = rest
            .first_chunk::<4>()
            .map_or(0, |g| u32::from_be_bytes(*g));
        let session = SessionId::from_uuid(uuid::Uuid::from_bytes(*session));
        let issued = tokens.issue(session, generation);
        assert_eq!(tokens.verify(&issued).ok(), Some((session, generation)));
    }
});
