//! The keyring: subkeys survive a master-key rotation; a deployment that predates the keyring
//! keeps the subkeys it had; only the master key in use opens it.

use std::time::Duration;

use domain::SessionId;
use infra::crypto::{MasterKey, PhoneIndex};
use infra::keyring::{self, KeyringError, MasterKeys};
use infra::tokens::{AccessTokenPolicy, AccessTokens, RefreshTokens};
use secrecy::ExposeSecret;

use super::Db;

const PHONE: &str = "+8613800138000";

fn policy() -> AccessTokenPolicy {
    AccessTokenPolicy {
        issuer: "identityd-test".into(),
        ttl: Duration::from_secs(900),
        audiences: vec!["wx0123456789abcdef".into()],
        reload_interval: Duration::from_secs(30),
    }
}

fn keys(current: &MasterKey, previous: Option<&MasterKey>) -> MasterKeys {
    let copy = |key: &MasterKey| MasterKey::from_base64(key.to_base64().expose_secret()).unwrap();
    MasterKeys {
        current: copy(current),
        previous: previous.map(copy),
    }
}

/// Before the keyring, every subkey came from `IDENTITY_MASTER_KEY` itself. Opening the keyring
/// on such a database must give the same subkeys, and keep giving them after a rotation.
pub async fn a_deployment_that_predates_the_keyring_keeps_its_subkeys(db: Db) {
    let old = MasterKey::generate();
    // The service as it was: signing keys, refresh tokens, phone hashes under the master key.
    AccessTokens::load_or_create(db.store.as_ref(), &old, policy())
        .await
        .unwrap();
    let session = SessionId::from_uuid(uuid::Uuid::now_v7());
    let refresh = RefreshTokens::new(&old).issue(session, 1);
    let phone_hash = PhoneIndex::new(&old).of(PHONE);

    let root = keyring::open(db.store.as_ref(), &keys(&old, None))
        .await
        .unwrap();
    assert_eq!(PhoneIndex::new(&root).of(PHONE), phone_hash);
    assert_eq!(
        RefreshTokens::new(&root).verify(&refresh).unwrap(),
        (session, 1)
    );
    AccessTokens::load_or_create(db.store.as_ref(), &root, policy())
        .await
        .expect("the stored signing key opens under the keyring");

    let new = MasterKey::generate();
    let rotation = keyring::rotate_master(db.store.as_ref(), &keys(&new, Some(&old)))
        .await
        .unwrap();
    assert_eq!((rotation.rewrapped, rotation.current), (1, 0));
    assert!(
        rotation.legacy_root,
        "the rotation says the root is still the old master key"
    );
    let root = keyring::open(db.store.as_ref(), &keys(&new, None))
        .await
        .unwrap();
    assert_eq!(
        root.derive("session-key").expose_secret(),
        old.derive("session-key").expose_secret(),
        "what the warning is about: the old master key still derives the subkeys"
    );
    assert_eq!(PhoneIndex::new(&root).of(PHONE), phone_hash);
    assert_eq!(
        RefreshTokens::new(&root).verify(&refresh).unwrap(),
        (session, 1)
    );
    AccessTokens::load_or_create(db.store.as_ref(), &root, policy())
        .await
        .unwrap();

    let refused = keyring::open(db.store.as_ref(), &keys(&old, None)).await;
    assert!(
        matches!(refused, Err(KeyringError::WrongMasterKey(_))),
        "the old key alone no longer opens the keyring"
    );
}

/// A fresh deployment's subkeys come from a random root, not from the master key; a rotation
/// changes none of them, is idempotent, and a stranger's key opens nothing.
pub async fn rotate_master_rewraps_the_keyring_and_keeps_every_subkey(db: Db) {
    let old = MasterKey::generate();
    let root = keyring::open(db.store.as_ref(), &keys(&old, None))
        .await
        .unwrap();
    let phone_hash = PhoneIndex::new(&root).of(PHONE);
    assert_ne!(phone_hash, PhoneIndex::new(&old).of(PHONE), "a random root");
    // A second instance starting on the same database gets the same root.
    let again = keyring::open(db.store.as_ref(), &keys(&old, None))
        .await
        .unwrap();
    assert_eq!(PhoneIndex::new(&again).of(PHONE), phone_hash);

    let new = MasterKey::generate();
    // During a rolling restart, an instance with both keys opens the keyring before and after.
    let rolling = keyring::open(db.store.as_ref(), &keys(&new, Some(&old)))
        .await
        .unwrap();
    assert_eq!(PhoneIndex::new(&rolling).of(PHONE), phone_hash);
    let rotation = keyring::rotate_master(db.store.as_ref(), &keys(&new, Some(&old)))
        .await
        .unwrap();
    assert_eq!((rotation.rewrapped, rotation.current), (1, 0));
    assert!(!rotation.legacy_root, "a random root is no master key");
    let rotation = keyring::rotate_master(db.store.as_ref(), &keys(&new, Some(&old)))
        .await
        .unwrap();
    assert_eq!((rotation.rewrapped, rotation.current), (0, 1), "idempotent");

    for (current, previous) in [(&new, None), (&new, Some(&old))] {
        let root = keyring::open(db.store.as_ref(), &keys(current, previous))
            .await
            .unwrap();
        assert_eq!(PhoneIndex::new(&root).of(PHONE), phone_hash);
    }
    for (current, previous) in [
        (&old, None),
        (&MasterKey::generate(), None),
        (&MasterKey::generate(), Some(&old)),
    ] {
        let refused = keyring::open(db.store.as_ref(), &keys(current, previous)).await;
        assert!(matches!(refused, Err(KeyringError::WrongMasterKey(_))));
    }
}
