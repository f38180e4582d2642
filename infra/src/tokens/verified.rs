//! Access tokens whose signature this process has already checked, or made: a token's later
//! requests skip the Ed25519 verification, the costliest step of an authenticated request
//! (about 8 % of the service's CPU per login + `/v1/me` on SQLite, BENCHMARKS.md). Envoy's
//! `jwt_authn` filter keeps such a cache for the same reason.
//!
//! Entries are keyed by the SHA-256 of the whole token, so only that very token hits (a
//! changed byte anywhere is a different key). Only what the signature proves is kept: every
//! hit is still checked against what can change since (expiry, the key still published) by
//! [`super::AccessTokens::verify`]. Whether the session is in force is not the token's
//! business: callers read it at every request.
//!
//! Bounded whatever the callers do: two generations of at most `HALF` entries each; when the
//! young one is full it becomes the old one and the old one is dropped, so entries that are
//! used keep being found for a while and nothing grows. Only tokens that verified (or that
//! were signed here) get in, so an unauthenticated caller adds nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::AccessClaims;

/// Entries per generation: two of them hold at most twice this (about 0.25 KB each).
const HALF: usize = 2048;

/// What a checked signature proved: the token's claims, signed with key `kid`.
#[derive(Debug, Clone)]
pub(super) struct Verified {
    pub claims: AccessClaims,
    pub kid: String,
}

type Key = [u8; 32];

#[derive(Default)]
pub(super) struct VerifiedTokens {
    generations: Mutex<Generations>,
    hits: AtomicU64,
}

#[derive(Default)]
struct Generations {
    young: HashMap<Key, Verified>,
    old: HashMap<Key, Verified>,
}

impl VerifiedTokens {
    pub fn key(token: &str) -> Key {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn get(&self, key: &Key) -> Option<Verified> {
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let found = generations
            .young
            .get(key)
            .or_else(|| generations.old.get(key))
            .cloned();
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    pub fn insert(&self, key: Key, verified: Verified) {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if generations.young.len() >= HALF {
            generations.old = std::mem::take(&mut generations.young);
        }
        generations.young.insert(key, verified);
    }

    /// Look-ups that found their token.
    #[cfg(test)]
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        let generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        generations.young.len() + generations.old.len()
    }
}

#[cfg(test)]
mod tests {
    use domain::{AppId, SessionId, UserId};

    use super::*;

    fn verified() -> Verified {
        let appid = AppId::parse("wx0123456789abcdef").unwrap();
        Verified {
            claims: AccessClaims {
                iss: "https://id.example".into(),
                sub: UserId::from_uuid(uuid::Uuid::now_v7()),
                aud: appid.clone(),
                sid: SessionId::from_uuid(uuid::Uuid::now_v7()),
                appid,
                iat: 0,
                exp: 0,
            },
            kid: "k".into(),
        }
    }

    #[test]
    fn it_never_holds_more_than_two_generations() {
        let cache = VerifiedTokens::default();
        let first = VerifiedTokens::key("token 0");
        for i in 0..5 * HALF {
            cache.insert(VerifiedTokens::key(&format!("token {i}")), verified());
            assert!(cache.len() <= 2 * HALF);
        }
        assert!(cache.get(&first).is_none(), "the oldest went");
        let last = VerifiedTokens::key(&format!("token {}", 5 * HALF - 1));
        assert!(cache.get(&last).is_some());
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn an_entry_outlives_one_turnover_of_its_generation() {
        let cache = VerifiedTokens::default();
        cache.insert(VerifiedTokens::key("kept"), verified());
        for i in 0..HALF {
            cache.insert(VerifiedTokens::key(&format!("token {i}")), verified());
        }
        assert!(cache.get(&VerifiedTokens::key("kept")).is_some());
        assert!(cache.get(&VerifiedTokens::key("kept ")).is_none());
    }
}
