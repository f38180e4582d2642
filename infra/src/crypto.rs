//! Sealing secrets (AES-256-GCM) under subkeys of one root key.
//!
//! A `MasterKey` never encrypts anything itself: each use (session keys, signing keys,
//! refresh-token MACs) gets its own subkey, derived with HMAC-SHA256 over a purpose label, so
//! a ciphertext of one kind can never be opened as another. The service derives its subkeys
//! from the keyring's root (`crate::keyring::open`), which `IDENTITY_MASTER_KEY` only wraps.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

const SEALED_FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    /// Wrong key, wrong context, or tampered data: deliberately indistinguishable.
    #[error("sealed data could not be opened")]
    Unseal,
}

/// `IDENTITY_MASTER_KEY`: 32 random bytes. Debug never shows it.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Parses `IDENTITY_MASTER_KEY`. The service derives nothing from it directly: it opens the
    /// keyring (`crate::keyring::open`), whose root is the `MasterKey` to derive subkeys from.
    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| CryptoError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(SecretBox::new(Box::new(key))))
    }

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(SecretBox::new(Box::new(key)))
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(SecretBox::new(Box::new(key))))
    }

    /// The raw key, to seal it into the keyring.
    pub(crate) fn expose_bytes(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    pub(crate) fn duplicate(&self) -> Self {
        Self(SecretBox::new(Box::new(*self.0.expose_secret())))
    }

    pub fn to_base64(&self) -> SecretString {
        STANDARD.encode(self.0.expose_secret()).into()
    }

    /// A 32-byte subkey for one purpose.
    pub fn derive(&self, purpose: &str) -> SecretBox<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"identityd/");
        mac.update(purpose.as_bytes());
        SecretBox::new(Box::new(mac.finalize().into_bytes().into()))
    }

    pub fn sealer(&self, purpose: &str) -> Sealer {
        let key = self.derive(purpose);
        Sealer(
            Aes256Gcm::new_from_slice(key.expose_secret())
                .unwrap_or_else(|_| unreachable!("the subkey is 32 bytes")),
        )
    }
}

/// Authenticated encryption for one purpose. `context` (the AAD) binds a ciphertext to what it
/// belongs to, e.g. `appid:openid`, so a sealed value moved to another row fails to open.
pub struct Sealer(Aes256Gcm);

impl Sealer {
    /// A sealer under a key of its own (a user's data key), not derived from the master key.
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new_from_slice(key).unwrap_or_else(|_| unreachable!("the key is 32 bytes")))
    }

    /// `version ‖ nonce ‖ ciphertext+tag`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of in-memory data cannot fail"));
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(SEALED_FORMAT_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Unseal)?;
        if version != SEALED_FORMAT_V1 || rest.len() < NONCE_LEN {
            return Err(CryptoError::Unseal);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Unseal)
    }
}

/// A keyed hash of a phone number (a blind index): admins can look a user up by phone while
/// no table holds the number in clear, and the index is useless without the master key.
pub struct PhoneIndex(SecretBox<[u8; 32]>);

impl PhoneIndex {
    pub fn new(master: &MasterKey) -> Self {
        Self(master.derive("phone-index"))
    }

    /// Hex HMAC-SHA256 of the number with spaces and dashes removed, so `+86 138-0013-8000`
    /// and `+8613800138000` meet.
    pub fn of(&self, phone: &str) -> String {
        let normalized: String = phone
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes keys of any length");
        mac.update(normalized.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_purpose_and_context() {
        let master = MasterKey::generate();
        let sealer = master.sealer("session-key");
        let sealed = sealer.seal(b"secret", b"wx1:o1");
        assert_eq!(sealer.open(&sealed, b"wx1:o1").unwrap(), b"secret");
        assert!(sealer.open(&sealed, b"wx1:o2").is_err());
        assert!(master.sealer("other").open(&sealed, b"wx1:o1").is_err());
        assert!(MasterKey::generate()
            .sealer("session-key")
            .open(&sealed, b"wx1:o1")
            .is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&tampered, b"wx1:o1").is_err());
        assert!(sealer.open(&[], b"").is_err());
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn phone_index_is_keyed_and_normalised() {
        let master = MasterKey::generate();
        let index = PhoneIndex::new(&master);
        assert_eq!(index.of("+86 138-0013-8000"), index.of("+8613800138000"));
        assert_ne!(index.of("+8613800138000"), index.of("+8613800138001"));
        assert_ne!(
            index.of("+8613800138000"),
            PhoneIndex::new(&MasterKey::generate()).of("+8613800138000")
        );
    }

    #[test]
    fn master_key_parses_only_32_bytes() {
        let key = MasterKey::generate();
        let encoded = key.to_base64();
        assert!(MasterKey::from_base64(encoded.expose_secret()).is_ok());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    }
}
