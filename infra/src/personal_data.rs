//! Personal data in events, sealed under a per-user data key (crypto-shredding).
//!
//! Each user gets a random 256-bit data key the first time they share something; it is stored
//! sealed under the master key. Events carry personal fields only as `pd1.<base64>` sealed
//! under that key, bound to the user id. Erasure deletes the key: the immutable log still
//! replays, and every sealed field in it is noise.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::{SealedPersonalData, UserId};
use rand::RngCore;
use serde_json::Value;

use crate::crypto::{MasterKey, Sealer};
use crate::store::{DataKeyStore, StoreError};

const PREFIX: &str = "pd1.";

#[derive(Debug, thiserror::Error)]
pub enum PersonalDataError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored key or a sealed field does not open: wrong master key or tampering.
    #[error("personal data could not be opened: {0}")]
    Corrupt(&'static str),
}

pub struct PersonalData {
    /// Seals data keys at rest.
    key_sealer: Sealer,
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

    async fn data_sealer(
        &self,
        store: &dyn DataKeyStore,
        user_id: UserId,
        create: bool,
    ) -> Result<Option<Sealer>, PersonalDataError> {
        let context = Self::context(user_id);
        let sealed_key = match store.data_key(user_id).await? {
            Some(sealed) => sealed,
            None if create => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let sealed = self.key_sealer.seal(&key, context.as_bytes());
                // A concurrent first share may win; use whichever key got stored.
                store.insert_data_key(user_id, &sealed).await?
            }
            None => return Ok(None),
        };
        let key = self
            .key_sealer
            .open(&sealed_key, context.as_bytes())
            .map_err(|_| PersonalDataError::Corrupt("data key"))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| PersonalDataError::Corrupt("data key length"))?;
        Ok(Some(Sealer::from_key(&key)))
    }

    /// Seals `data` for `user_id`, creating the user's data key if needed.
    pub async fn seal(
        &self,
        store: &dyn DataKeyStore,
        user_id: UserId,
        data: &Value,
    ) -> Result<SealedPersonalData, PersonalDataError> {
        let sealer = self
            .data_sealer(store, user_id, true)
            .await?
            .ok_or(PersonalDataError::Corrupt("no data key"))?;
        let plaintext = serde_json::to_vec(data).expect("a JSON value serialises");
        let sealed = sealer.seal(&plaintext, Self::context(user_id).as_bytes());
        Ok(SealedPersonalData(format!(
            "{PREFIX}{}",
            STANDARD.encode(sealed)
        )))
    }

    /// Opens sealed fields of one user; `None` for each once the user's key is destroyed.
    pub async fn open_all(
        &self,
        store: &dyn DataKeyStore,
        user_id: UserId,
        sealed: &[&SealedPersonalData],
    ) -> Result<Vec<Option<Value>>, PersonalDataError> {
        let Some(sealer) = self.data_sealer(store, user_id, false).await? else {
            return Ok(vec![None; sealed.len()]);
        };
        let context = Self::context(user_id);
        sealed
            .iter()
            .map(|field| {
                let bytes = field
                    .0
                    .strip_prefix(PREFIX)
                    .and_then(|b64| STANDARD.decode(b64).ok())
                    .ok_or(PersonalDataError::Corrupt("sealed field format"))?;
                let plaintext = sealer
                    .open(&bytes, context.as_bytes())
                    .map_err(|_| PersonalDataError::Corrupt("sealed field"))?;
                serde_json::from_slice(&plaintext)
                    .map(Some)
                    .map_err(|_| PersonalDataError::Corrupt("sealed field JSON"))
            })
            .collect()
    }

    /// Crypto-shredding: after this, nothing sealed for the user opens again.
    pub async fn destroy(
        &self,
        store: &dyn DataKeyStore,
        user_id: UserId,
    ) -> Result<(), PersonalDataError> {
        Ok(store.destroy_data_key(user_id).await?)
    }
}
