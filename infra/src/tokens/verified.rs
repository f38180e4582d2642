//! Access tokens whose signature this process has made or already checked: a token's later
//! requests skip the Ed25519 verification, the costliest step of an authenticated request
//! (identityd's CPU per SQLite login + `/v1/me` 0.89×, BENCHMARKS.md "Landed: access tokens
//! known by their digest"). Envoy's `jwt_authn` filter keeps such a cache for the same reason.
//!
//! Entries are found by the SHA-256 of the whole token, so only that very token hits (a
//! changed byte anywhere is a different digest). An entry holds what the signature vouches
//! for, the claims and the key id; [`super::AccessTokens::verify`] judges those at every use
//! as it judges a token checked just now. Whether the session is in force is not the token's
//! business: callers read it at every request.
//!
//! Bounded whatever the callers do: two generations of at most [`PER_GENERATION`] entries;
//! when the young one is full it becomes the old one and the old one is dropped. An entry
//! found in the old generation moves back to the young one, so a token in use stays known,
//! and one not used for two turnovers is forgotten (at 1,000 logins/s, 2 to 4 s after its
//! last use; longer at lower rates). Only tokens signed here or that verified get in, so an
//! unauthenticated caller adds nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

use super::AccessClaims;

/// Entries per generation (about 0.3 KB each).
pub(super) const PER_GENERATION: usize = 2048;

/// What a checked signature vouches for: the token's claims, signed with key `kid`.
#[derive(Debug)]
pub(super) struct Verified {
    pub(super) claims: AccessClaims,
    pub(super) kid: String,
}

pub(super) type TokenDigest = [u8; 32];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Lookup {
    /// `hit`: the signature was not checked again; `miss`: it was.
    outcome: &'static str,
}

#[derive(Default)]
pub(super) struct VerifiedTokens {
    generations: Mutex<Generations>,
    lookups: Family<Lookup, Counter>,
}

#[derive(Default)]
struct Generations {
    young: HashMap<TokenDigest, Arc<Verified>>,
    old: HashMap<TokenDigest, Arc<Verified>>,
}

impl Generations {
    fn insert(&mut self, digest: TokenDigest, verified: Arc<Verified>) {
        if self.young.len() >= PER_GENERATION {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(digest, verified);
    }
}

impl VerifiedTokens {
    pub(super) fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(super) fn get(&self, digest: &TokenDigest) -> Option<Arc<Verified>> {
        let found = {
            let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
            match generations.young.get(digest) {
                Some(verified) => Some(Arc::clone(verified)),
                None => generations.old.remove(digest).inspect(|verified| {
                    generations.insert(*digest, Arc::clone(verified));
                }),
            }
        };
        let outcome = if found.is_some() { "hit" } else { "miss" };
        self.lookups.get_or_create(&Lookup { outcome }).inc();
        found
    }

    pub(super) fn insert(&self, digest: TokenDigest, verified: Verified) {
        let verified = Arc::new(verified);
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        generations.insert(digest, verified);
    }

    /// Adds the look-ups to a scrape (under the registry's prefix).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "access_token_cache_lookups",
            "Access tokens looked up among those whose signature was made or checked here \
             (hit: not checked again; miss: checked)",
            self.lookups.clone(),
        );
    }

    /// Look-ups that found their token.
    #[cfg(test)]
    pub(super) fn hits(&self) -> u64 {
        self.lookups.get_or_create(&Lookup { outcome: "hit" }).get()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
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

    fn fill(cache: &VerifiedTokens, from: usize, count: usize) {
        for i in from..from + count {
            cache.insert(VerifiedTokens::digest(&format!("token {i}")), verified());
        }
    }

    #[test]
    fn it_never_holds_more_than_two_generations() {
        let cache = VerifiedTokens::default();
        for round in 0..5 {
            fill(&cache, round * PER_GENERATION, PER_GENERATION);
            assert!(cache.len() <= 2 * PER_GENERATION);
        }
        assert!(cache.get(&VerifiedTokens::digest("token 0")).is_none());
        let last = format!("token {}", 5 * PER_GENERATION - 1);
        assert!(cache.get(&VerifiedTokens::digest(&last)).is_some());
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn a_token_in_use_outlives_the_turnovers_and_an_unused_one_does_not() {
        let cache = VerifiedTokens::default();
        let (used, unused) = (
            VerifiedTokens::digest("used"),
            VerifiedTokens::digest("unused"),
        );
        cache.insert(used, verified());
        cache.insert(unused, verified());
        for round in 0..4 {
            fill(&cache, round * PER_GENERATION, PER_GENERATION);
            assert!(cache.get(&used).is_some(), "round {round}");
        }
        assert!(cache.get(&unused).is_none());
    }
}
