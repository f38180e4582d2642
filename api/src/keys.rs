//! `identityd keys`: rotating the token signing key and the master key.

use std::time::Duration;

use anyhow::Context;
use infra::keyring::{self, Rotation};
use infra::store::{SigningKeyRetirement, StoredSigningKey};

use crate::config::Config;
use crate::startup::master_keys;

/// Adds a signing key. Running instances load it within `IDENTITY_SIGNING_KEY_RELOAD_SECS`
/// and all sign with it from its stored `activates_at` (30 s after now, by the database's
/// clock); the previous key stays published until its stored `retire_after` (this host's
/// `IDENTITY_ACCESS_TOKEN_TTL_SECS` + 60 s after that).
pub async fn rotate_signing_key(config: &Config) -> anyhow::Result<StoredSigningKey> {
    let keys = master_keys(config)?;
    let store = infra::store::connect(&config.database_url)
        .await
        .context("opening the database (IDENTITY_DATABASE_URL)")?;
    let keyring = keyring::open(store.as_ref(), &keys)
        .await
        .context("opening the keyring")?;
    let ttl = Duration::from_secs(config.access_token_ttl_secs);
    Ok(infra::tokens::add_signing_key(store.as_ref(), &keyring.sealing, ttl).await?)
}

/// Retires a signing key now (`identityd keys retire <kid>`): instances stop verifying its
/// tokens and drop it from the JWKS at their next reload. Refuses the key that signs.
pub async fn retire_signing_key(config: &Config, kid: &str) -> anyhow::Result<()> {
    let store = infra::store::connect(&config.database_url)
        .await
        .context("opening the database (IDENTITY_DATABASE_URL)")?;
    match store.retire_signing_key(kid).await? {
        SigningKeyRetirement::Retired => Ok(()),
        SigningKeyRetirement::NotFound => anyhow::bail!("there is no signing key {kid}"),
        SigningKeyRetirement::AlreadyRetired => {
            anyhow::bail!("signing key {kid} is already retired")
        }
        SigningKeyRetirement::Signs => anyhow::bail!(
            "signing key {kid} is the newest key, the one that signs (or is about to): retiring \
             it would leave no key to sign with. Run `identityd keys rotate` first, then \
             `identityd keys retire {kid}` (the new key then signs at once)"
        ),
    }
}

/// Re-wraps the keyring under `IDENTITY_MASTER_KEY`, taking it from
/// `IDENTITY_MASTER_KEY_PREVIOUS`; with `new_root` (or when the sealing root is an old master
/// key), also replaces the sealing root and re-seals every sealed row (see
/// `infra::keyring::rotate_master`).
pub async fn rotate_master(config: &Config, new_root: bool) -> anyhow::Result<Rotation> {
    let keys = master_keys(config)?;
    anyhow::ensure!(
        keys.previous.is_some() || new_root,
        "set IDENTITY_MASTER_KEY to the new master key and IDENTITY_MASTER_KEY_PREVIOUS to the \
         one in use, then run this again"
    );
    let store = infra::store::connect(&config.database_url)
        .await
        .context("opening the database (IDENTITY_DATABASE_URL)")?;
    Ok(keyring::rotate_master(store.as_ref(), &keys, new_root).await?)
}
