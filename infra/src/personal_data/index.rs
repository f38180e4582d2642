//! Keyed hashes for look-ups (blind indexes): the claims table and admin searches find a person
//! by openid or unionid without any table holding them in clear.

use domain::{AppId, Claim, OpenId};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::crypto::MasterKey;

/// A claim as the claims table keys it: its kind and the keyed hash of its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimKey {
    pub kind: &'static str,
    pub value: String,
}

/// Where the session-key vault keeps an account's WeChat `session_key`: the keyed hash of the
/// account (its claim's). Only [`LookupIndex::account`] makes one, so a clear openid cannot be
/// passed where the vault expects an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountKey(String);

impl AccountKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The keyed hash of WeChat identifiers. Its key comes from the master key (one purpose label).
pub struct LookupIndex(SecretBox<[u8; 32]>);

impl LookupIndex {
    pub fn new(master: &MasterKey) -> Self {
        Self(master.derive("lookup-index"))
    }

    /// The keyed hash of a claim's clear value, as [`Claim::key`] spells it.
    pub fn hash(&self, kind: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes keys of any length");
        // The kind is part of the input so equal strings of different kinds never meet.
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether a claims-table value is a keyed hash already (64 hex digits); clear values (from
    /// before the migration) hold a `:` or are WeChat ids, which are not.
    pub fn is_hash(value: &str) -> bool {
        value.len() == 64
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// Where the session-key vault keeps an account's WeChat `session_key`: the keyed hash of
    /// the account (the claim's), so that table holds no openid in clear either.
    pub fn account(&self, appid: &AppId, openid: &OpenId) -> AccountKey {
        AccountKey(
            self.claim(&Claim::WeChatAccount {
                appid: appid.clone(),
                openid: openid.clone(),
            })
            .value,
        )
    }

    /// The claims table's key for a claim.
    pub fn claim(&self, claim: &Claim) -> ClaimKey {
        let (kind, value) = claim.key();
        ClaimKey {
            kind,
            value: self.hash(kind, &value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{AppId, OpenId, UnionId};

    #[test]
    fn claims_hash_by_kind_and_key() {
        let master = MasterKey::generate();
        let index = LookupIndex::new(&master);
        let account = Claim::WeChatAccount {
            appid: AppId::parse("wx0123456789abcdef").unwrap(),
            openid: OpenId::parse("o_1").unwrap(),
        };
        let key = index.claim(&account);
        assert_eq!(key.kind, Claim::WECHAT_ACCOUNT);
        assert!(!key.value.contains("o_1"));
        assert_eq!(key, index.claim(&account));
        assert_ne!(
            index
                .claim(&Claim::UnionId(UnionId::parse("o_1").unwrap()))
                .value,
            key.value
        );
        assert_ne!(
            LookupIndex::new(&MasterKey::generate()).claim(&account),
            key
        );
    }
}
