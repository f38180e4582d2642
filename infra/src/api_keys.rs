//! API keys for admin and analytics callers: `idk_<key id>_<secret>`, scoped, stored as a
//! keyed hash. The key id is public (it names the actor in the audit log); the secret is 256
//! random bits, so a fast hash is enough and no password hashing is needed.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "idk";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    AdminRead,
    AdminWrite,
    EventsRead,
    /// `POST /v1/token/introspect` (RFC 7662 wants an authenticated caller).
    TokensIntrospect,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::AdminRead,
        Scope::AdminWrite,
        Scope::EventsRead,
        Scope::TokensIntrospect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminRead => "admin:read",
            Self::AdminWrite => "admin:write",
            Self::EventsRead => "events:read",
            Self::TokensIntrospect => "tokens:introspect",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (expected admin:read, admin:write, events:read or tokens:introspect)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// Parses `"admin:read,events:read"` (commas or spaces).
pub fn parse_scopes(list: &str) -> Result<BTreeSet<Scope>, UnknownScope> {
    list.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Scope::from_str)
        .collect()
}

/// A key as stored: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub key_id: String,
    pub secret_hash: Vec<u8>,
    pub scopes: BTreeSet<Scope>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl StoredApiKey {
    /// Whether `secret` is this key's secret (constant-time comparison).
    pub fn verify(&self, secret: &str) -> bool {
        mac(&self.key_id, secret)
            .verify_slice(&self.secret_hash)
            .is_ok()
    }

    pub fn scopes_text(&self) -> String {
        self.scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn scopes_from_text(text: &str) -> Result<BTreeSet<Scope>, UnknownScope> {
        parse_scopes(text)
    }
}

fn mac(key_id: &str, secret: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key_id.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(secret.as_bytes());
    mac
}

/// A freshly minted key: `token` is shown once and then only its hash remains.
pub struct NewApiKey {
    pub token: String,
    pub stored: StoredApiKey,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key_id", &self.stored.key_id)
            .finish_non_exhaustive()
    }
}

pub fn generate(name: &str, scopes: BTreeSet<Scope>, now: DateTime<Utc>) -> NewApiKey {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let secret_hash = mac(&key_id, &secret).finalize().into_bytes().to_vec();
    NewApiKey {
        token: format!("{PREFIX}_{key_id}_{secret}"),
        stored: StoredApiKey {
            key_id,
            secret_hash,
            scopes,
            name: name.to_owned(),
            created_at: now,
            revoked_at: None,
        },
    }
}

/// Splits a presented key into its id and secret; `None` if it is not shaped like one of ours.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?.strip_prefix('_')?;
    let (key_id, secret) = rest.split_once('_')?;
    let well_formed =
        key_id.len() == 16 && key_id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43;
    well_formed.then_some((key_id, secret))
}

/// Constant-time equality for the bootstrap admin token.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    mac("bootstrap", presented)
        .verify_slice(&mac("bootstrap", expected).finalize().into_bytes())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_others_do_not() {
        let key = generate("ops", parse_scopes("admin:read").unwrap(), Utc::now());
        let (id, secret) = split_token(&key.token).unwrap();
        assert_eq!(id, key.stored.key_id);
        assert!(key.stored.verify(secret));
        let other = generate("ops", BTreeSet::new(), Utc::now());
        let (_, other_secret) = split_token(&other.token).unwrap();
        assert!(!key.stored.verify(other_secret));
        assert!(!format!("{key:?}").contains(secret));
    }

    #[test]
    fn malformed_tokens_are_not_split() {
        for token in [
            "",
            "idk",
            "idk_",
            "idk_zz_",
            "Bearer x",
            "idk_0123456789abcdef_short",
        ] {
            assert_eq!(split_token(token), None, "{token}");
        }
    }

    #[test]
    fn scopes_parse_strictly() {
        assert_eq!(parse_scopes("admin:read, events:read").unwrap().len(), 2);
        assert_eq!(
            parse_scopes("tokens:introspect").unwrap(),
            BTreeSet::from([Scope::TokensIntrospect])
        );
        assert!(parse_scopes("admin:*").is_err());
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
    }
}
