//! Personal data in events, sealed under a per-user data key (crypto-shredding).
//!
//! Each user gets a random 256-bit data key when their first event is written; it is stored
//! sealed under a keyring subkey (`crate::keyring`). Events carry personal fields only as
//! `pd1.<base64>` sealed under that key, bound to the user id ([`codec`] says which fields, and seals and opens them
//! at the boundary where events are encoded and decoded). Erasure deletes the key: the
//! immutable log still replays, and every sealed field in it is noise.

pub mod codec;
pub mod index;
pub mod migration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::{SealedPersonalData, UserId};
use rand::RngCore;
use serde_json::Value;

use crate::crypto::{MasterKey, Sealer};
use crate::store::{DataKeyStore, StoreError};

pub use codec::{open_event, seal_event, PersonalKeys};
pub use index::{AccountKey, LookupIndex};

const PREFIX: &str = "pd1.";

#[derive(Debug, thiserror::Error)]
pub enum PersonalDataError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored key or a sealed field does not open: wrong master key or tampering.
    #[error("personal data could not be opened: {0}")]
    Corrupt(&'static str),
}

/// Whether a stored value is a sealed field (`pd1.…`).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

pub struct PersonalData {
    /// Seals data keys at rest.
    key_sealer: Sealer,
}

/// One user's opened data key: seals and opens that user's personal fields.
pub struct UserKey {
    user_id: UserId,
    sealer: Sealer,
}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserKey({}, <redacted>)", self.user_id)
    }
}

impl UserKey {
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    fn context(&self) -> String {
        format!("user:{}", self.user_id)
    }

    /// Seals a JSON value (the field's clear form) as `pd1.<base64>`.
    pub fn seal(&self, data: &Value) -> SealedPersonalData {
        let plaintext = serde_json::to_vec(data).expect("a JSON value serialises");
        let sealed = self.sealer.seal(&plaintext, self.context().as_bytes());
        SealedPersonalData(format!("{PREFIX}{}", STANDARD.encode(sealed)))
    }

    /// Seals bytes that are not an event field (an avatar image), bound to this user and to
    /// `what` (the row it is stored in, e.g. `avatar:{id}`), so it opens nowhere else.
    pub fn seal_bytes(&self, plaintext: &[u8], what: &str) -> Vec<u8> {
        self.sealer
            .seal(plaintext, self.bytes_context(what).as_bytes())
    }

    /// Opens what [`UserKey::seal_bytes`] sealed for `what`.
    pub fn open_bytes(&self, sealed: &[u8], what: &str) -> Result<Vec<u8>, PersonalDataError> {
        self.sealer
            .open(sealed, self.bytes_context(what).as_bytes())
            .map_err(|_| PersonalDataError::Corrupt("sealed bytes"))
    }

    fn bytes_context(&self, what: &str) -> String {
        format!("{}/{what}", self.context())
    }

    /// Opens a `pd1.` field sealed for this user.
    pub fn open(&self, sealed: &str) -> Result<Value, PersonalDataError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or(PersonalDataError::Corrupt("sealed field format"))?;
        let plaintext = self
            .sealer
            .open(&bytes, self.context().as_bytes())
            .map_err(|_| PersonalDataError::Corrupt("sealed field"))?;
        serde_json::from_slice(&plaintext)
            .map_err(|_| PersonalDataError::Corrupt("sealed field JSON"))
    }
}

impl PersonalData {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            key_sealer: master.sealer("user-data-key"),
        }
    }

    fn context(user_id: UserId) -> String {
        format!("user:{user_id}")
    }

    /// A user's key from its sealed form as read with their stream (`None`: erased, or not
    /// made yet).
    pub fn open_key(
        &self,
        user_id: UserId,
        sealed_key: Option<&[u8]>,
    ) -> Result<Option<UserKey>, PersonalDataError> {
        sealed_key
            .map(|sealed| self.unwrap_key(user_id, sealed))
            .transpose()
    }

    fn unwrap_key(&self, user_id: UserId, sealed_key: &[u8]) -> Result<UserKey, PersonalDataError> {
        let key = self
            .key_sealer
            .open(sealed_key, Self::context(user_id).as_bytes())
            .map_err(|_| PersonalDataError::Corrupt("data key"))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| PersonalDataError::Corrupt("data key length"))?;
        Ok(UserKey {
            user_id,
            sealer: Sealer::from_key(&key),
        })
    }

    /// The user's data key, or `None` when it was destroyed (or never made).
    pub async fn key(
        &self,
        store: &dyn DataKeyStore,
        user_id: UserId,
    ) -> Result<Option<UserKey>, PersonalDataError> {
        match store.data_key(user_id).await? {
            Some(sealed) => self.unwrap_key(user_id, &sealed).map(Some),
            None => Ok(None),
        }
    }

    /// A fresh data key for a user who has none yet, not stored: the key, and the key sealed
    /// for storage. A registration stores it with its events
    /// ([`AppendBatch::data_key`](crate::store::AppendBatch::data_key)), so a registration that
    /// loses its race leaves no key behind.
    pub fn new_key(&self, user_id: UserId) -> (UserKey, Vec<u8>) {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let sealed = self
            .key_sealer
            .seal(&key, Self::context(user_id).as_bytes());
        let user_key = UserKey {
            user_id,
            sealer: Sealer::from_key(&key),
        };
        (user_key, sealed)
    }

    /// Makes and stores a data key for a user who has none yet (one write, no read). A
    /// concurrent first write may win; whichever key got stored is returned.
    pub async fn create_key(
        &self,
        store: &dyn DataKeyStore,
        user_id: UserId,
    ) -> Result<UserKey, PersonalDataError> {
        let (_, sealed) = self.new_key(user_id);
        let stored = store.insert_data_key(user_id, &sealed).await?;
        self.unwrap_key(user_id, &stored)
    }

    /// The user's data key, made if missing.
    pub async fn key_or_create(
        &self,
        store: &dyn DataKeyStore,
        user_id: UserId,
    ) -> Result<UserKey, PersonalDataError> {
        match self.key(store, user_id).await? {
            Some(key) => Ok(key),
            None => self.create_key(store, user_id).await,
        }
    }

    /// Opens sealed fields of one user; `None` for each once the user's key is destroyed.
    pub async fn open_all(
        &self,
        store: &dyn DataKeyStore,
        user_id: UserId,
        sealed: &[&SealedPersonalData],
    ) -> Result<Vec<Option<Value>>, PersonalDataError> {
        let Some(key) = self.key(store, user_id).await? else {
            return Ok(vec![None; sealed.len()]);
        };
        sealed
            .iter()
            .map(|field| key.open(&field.0).map(Some))
            .collect()
    }
}
