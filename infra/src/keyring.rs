//! The keyring: the one place a purpose's subkey comes from.
//!
//! Two roots, kept in the database sealed under the master key (`IDENTITY_MASTER_KEY`), so
//! changing the master key re-wraps a row or two while every subkey stays as it was:
//!
//! - the *sealing root* (entry `sealing`; until one exists, the look-up root) derives the
//!   sealers of session keys, signing keys and user data keys and the refresh-token MAC key.
//!   It can be replaced (`rotate_master`), re-sealing every row sealed under it;
//! - the *look-up root* (entry `root`) derives the keys of blind indexes (the phone and claim
//!   look-up hashes): hashes of values we do not keep in clear cannot be recomputed, so this
//!   root keeps its first value.
//!
//! A fresh deployment gets a random root. A deployment that predates the keyring derived its
//! subkeys from the master key itself: its look-up root is that first master key, for good,
//! and so is its sealing root until the first `rotate_master`, which replaces it by a random
//! one (`Rotation::legacy_root`). After that, the old master key still derives the look-up
//! keys (it confirms a guessed phone number or openid against a copy of the database) but
//! opens no sealed row and forges no refresh token.

use chrono::Utc;

use crate::crypto::MasterKey;
use crate::store::{KeyringEntry, KeyringRewrap, Reseal, RowReseal, Store, StoreError};
use crate::tokens::SIGNING_KEY_PURPOSE;

/// The look-up root (and, until a sealing root exists, the sealing root too).
const ROOT: &str = "root";
/// The sealing root, once `rotate_master` made one.
const SEALING: &str = "sealing";
/// The master key's own subkey that seals keyring entries.
const WRAP_PURPOSE: &str = "keyring";

/// The master keys the configuration names.
pub struct MasterKeys {
    /// `IDENTITY_MASTER_KEY`: the key the keyring is (or, after a rotation, will be) sealed under.
    pub current: MasterKey,
    /// `IDENTITY_MASTER_KEY_PREVIOUS`: read while the keyring may still be sealed under it.
    pub previous: Option<MasterKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the keyring in this database does not open under IDENTITY_MASTER_KEY{0}: start with the \
         master key in use (after `identityd keys rotate-master`, the new one)"
    )]
    WrongMasterKey(&'static str),
    #[error("the keyring entry {0} is malformed")]
    Corrupt(String),
    #[error(
        "the keyring or a sealed row changed while it was being re-wrapped (another rotation, \
         or an instance still running?): run it again"
    )]
    Conflict,
    #[error("a {0} does not open under the sealing root: nothing was changed")]
    Unopenable(&'static str),
}

/// The keyring's two roots. Use `sealing` for everything sealed or MAC'd (it can be replaced:
/// `rotate-master --new-root`), `lookup` for keyed hashes over values we cannot recompute
/// (blind indexes: the phone and claim look-ups), which keeps its first value.
pub struct Keyring {
    pub sealing: MasterKey,
    pub lookup: MasterKey,
}

/// What `rotate_master` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Entries moved from the previous master key to the current one.
    pub rewrapped: usize,
    /// Entries already sealed under the current master key.
    pub current: usize,
    /// The root is a master key itself (`IDENTITY_MASTER_KEY_PREVIOUS` or, before any
    /// rotation, `IDENTITY_MASTER_KEY`): the database predates the keyring. Re-wrapping
    /// changed who can open the keyring, not the root, so whoever holds that master key still
    /// derives every subkey. The rotation protects nothing against a leak of that key.
    pub legacy_root: bool,
    /// A new random sealing root replaced the old one, and every sealed row was re-sealed.
    pub new_root: bool,
    /// Rows re-sealed under the new root: session keys, signing keys, user data keys.
    pub resealed: [i64; 3],
}

impl MasterKeys {
    fn tried(&self) -> &'static str {
        if self.previous.is_some() {
            " nor IDENTITY_MASTER_KEY_PREVIOUS"
        } else {
            ""
        }
    }

    /// Opens an entry under the current key, else the previous one; `true` when it took the
    /// previous key (the entry still has to be re-wrapped).
    fn unwrap(&self, entry: &KeyringEntry) -> Result<(MasterKey, bool), KeyringError> {
        let context = context(&entry.name);
        let candidates = std::iter::once((&self.current, false))
            .chain(self.previous.iter().map(|key| (key, true)));
        for (master, is_previous) in candidates {
            if let Ok(bytes) = master
                .sealer(WRAP_PURPOSE)
                .open(&entry.sealed_key, &context)
            {
                let key = MasterKey::from_bytes(&bytes)
                    .map_err(|_| KeyringError::Corrupt(entry.name.clone()))?;
                return Ok((key, is_previous));
            }
        }
        Err(KeyringError::WrongMasterKey(self.tried()))
    }

    /// Whether `key` is one of the master keys themselves (a root that predates the keyring).
    fn is_master_key(&self, key: &MasterKey) -> bool {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .any(|master| master.expose_bytes() == key.expose_bytes())
    }

    fn wrap(&self, name: &str, key: &MasterKey) -> Vec<u8> {
        self.current
            .sealer(WRAP_PURPOSE)
            .seal(key.expose_bytes(), &context(name))
    }
}

fn context(name: &str) -> Vec<u8> {
    format!("keyring:{name}").into_bytes()
}

/// The root every subkey derives from, creating the keyring on a deployment's first start
/// with it. Pass the result wherever a `MasterKey` derives subkeys.
pub async fn open(store: &dyn Store, keys: &MasterKeys) -> Result<Keyring, KeyringError> {
    let entry = root_entry(store, keys).await?;
    let (lookup, mut under_previous) = keys.unwrap(&entry)?;
    let sealing = match stored_entry(store, SEALING).await? {
        Some(entry) => {
            let (sealing, previous) = keys.unwrap(&entry)?;
            under_previous |= previous;
            sealing
        }
        None => lookup.duplicate(),
    };
    if keys.is_master_key(&sealing) {
        tracing::warn!(
            "the keyring's sealing root is a master key itself (this database predates the \
             keyring): whoever holds that key can open every sealed row; run `identityd keys \
             rotate-master` to give it a random sealing root"
        );
    }
    if under_previous {
        tracing::warn!(
            "the keyring is still sealed under IDENTITY_MASTER_KEY_PREVIOUS: run \
             `identityd keys rotate-master`, then drop the previous key"
        );
    } else if keys.previous.is_some() {
        tracing::info!(
            "the keyring is sealed under IDENTITY_MASTER_KEY: IDENTITY_MASTER_KEY_PREVIOUS is \
             no longer needed"
        );
    }
    Ok(Keyring { sealing, lookup })
}

/// `identityd keys rotate-master`: re-seals every keyring entry still under the previous
/// master key under the current one, in one transaction. Idempotent.
///
/// When the sealing root is a master key itself (a deployment that predates the keyring) or
/// `new_root` asks for it, it also replaces the sealing root by a random one and, in the same
/// transaction, re-seals every row sealed under a subkey of the old one (session keys, signing
/// keys, user data keys). Refresh tokens, MAC'd under the old root, stop verifying. The
/// look-up root is kept (its hashes cannot be recomputed).
pub async fn rotate_master(
    store: &dyn Store,
    keys: &MasterKeys,
    new_root: bool,
) -> Result<Rotation, KeyringError> {
    root_entry(store, keys).await?;
    let entries = store.keyring_entries().await?;
    let mut rewraps = Vec::new();
    let mut sealing = None;
    let mut lookup = None;
    for entry in &entries {
        let (key, under_previous) = keys.unwrap(entry)?;
        if under_previous {
            rewraps.push(KeyringRewrap {
                name: entry.name.clone(),
                from: entry.sealed_key.clone(),
                to: keys.wrap(&entry.name, &key),
            });
        }
        match entry.name.as_str() {
            ROOT => lookup = Some(key),
            SEALING => sealing = Some((entry, key)),
            _ => {}
        }
    }
    let lookup = lookup.ok_or_else(|| KeyringError::Corrupt(ROOT.into()))?;
    let old_sealing = sealing.as_ref().map_or(&lookup, |(_, key)| key);
    let legacy_root = keys.is_master_key(old_sealing);
    let rewrapped = rewraps.len();
    let current = entries.len() - rewrapped;
    if !(legacy_root || new_root) {
        if !rewraps.is_empty() && !store.rewrap_keyring(&rewraps).await? {
            return Err(KeyringError::Conflict);
        }
        return Ok(Rotation {
            rewrapped,
            current,
            legacy_root,
            new_root: false,
            resealed: [0; 3],
        });
    }

    let next = MasterKey::generate();
    let mut rows = Vec::new();
    for (row, sealed) in store.sealed_rows().await? {
        let context = row.context();
        let plain = old_sealing
            .sealer(row.purpose())
            .open(&sealed, &context)
            .map_err(|_| KeyringError::Unopenable(row.purpose()))?;
        let to = next.sealer(row.purpose()).seal(&plain, &context);
        rows.push(RowReseal {
            row,
            from: sealed,
            to,
        });
    }
    let sealed_next = keys.wrap(SEALING, &next);
    let insert = match &sealing {
        Some((entry, _)) => {
            // Replaces the sealing entry (whether or not it also needed re-wrapping).
            rewraps.retain(|r| r.name != SEALING);
            rewraps.push(KeyringRewrap {
                name: SEALING.to_owned(),
                from: entry.sealed_key.clone(),
                to: sealed_next,
            });
            None
        }
        None => Some(KeyringEntry {
            name: SEALING.to_owned(),
            sealed_key: sealed_next,
            created_at: Utc::now(),
        }),
    };
    let plan = Reseal {
        rewraps,
        insert,
        rows,
    };
    let resealed = plan.counts();
    if !store.reseal(&plan).await? {
        return Err(KeyringError::Conflict);
    }
    Ok(Rotation {
        rewrapped,
        current,
        legacy_root,
        new_root: true,
        resealed,
    })
}

async fn stored_entry(store: &dyn Store, name: &str) -> Result<Option<KeyringEntry>, StoreError> {
    Ok(store
        .keyring_entries()
        .await?
        .into_iter()
        .find(|e| e.name == name))
}

async fn stored_root(store: &dyn Store) -> Result<Option<KeyringEntry>, StoreError> {
    stored_entry(store, ROOT).await
}

async fn root_entry(store: &dyn Store, keys: &MasterKeys) -> Result<KeyringEntry, KeyringError> {
    if let Some(entry) = stored_root(store).await? {
        return Ok(entry);
    }
    let root = match initial_root(store, keys).await {
        Ok(root) => root,
        // An instance starting at the same moment may have created the keyring and then the
        // first signing key between our two reads: its keyring is the one to open.
        Err(KeyringError::WrongMasterKey(tried)) => {
            return stored_root(store)
                .await?
                .ok_or(KeyringError::WrongMasterKey(tried))
        }
        Err(e) => return Err(e),
    };
    let entry = KeyringEntry {
        name: ROOT.to_owned(),
        sealed_key: keys.wrap(ROOT, &root),
        created_at: Utc::now(),
    };
    // Instances starting together: whichever root was stored first is everyone's.
    let sealed_key = store.insert_keyring_entry(&entry).await?;
    Ok(KeyringEntry {
        sealed_key,
        ..entry
    })
}

/// A random root for a fresh database; for one that predates the keyring, the master key
/// its signing keys were sealed under (current or previous), from which every subkey was
/// derived so far.
async fn initial_root(store: &dyn Store, keys: &MasterKeys) -> Result<MasterKey, KeyringError> {
    let stored = store.signing_keys().await?;
    let Some(signing_key) = stored.first() else {
        return Ok(MasterKey::generate());
    };
    let candidates = std::iter::once(&keys.current).chain(keys.previous.iter());
    for master in candidates {
        let opens = master
            .sealer(SIGNING_KEY_PURPOSE)
            .open(&signing_key.sealed_private_key, signing_key.kid.as_bytes())
            .is_ok();
        if opens {
            return Ok(master.duplicate());
        }
    }
    Err(KeyringError::WrongMasterKey(keys.tried()))
}
