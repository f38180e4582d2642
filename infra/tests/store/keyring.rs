//! The keyring: subkeys survive a master-key rotation; a deployment that predates the keyring
//! keeps the subkeys it had; only the master key in use opens it.

use std::time::Duration;

use domain::{SessionId, UserId};
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
/// on such a database gives the same subkeys. `rotate-master` finds the sealing root is the old
/// master key and replaces it: every sealed row is re-sealed (the old key opens none of them),
/// refresh tokens MAC'd before stop verifying, and the look-up hashes stay as they were.
pub async fn rotate_master_gives_a_deployment_that_predates_the_keyring_a_new_sealing_root(db: Db) {
    let old = MasterKey::generate();
    // The service as it was: signing keys, session keys, data keys, refresh tokens, phone
    // hashes, all under the master key.
    AccessTokens::load_or_create(db.store.as_ref(), &old, policy())
        .await
        .unwrap();
    let session = SessionId::from_uuid(uuid::Uuid::now_v7());
    let refresh = RefreshTokens::new(&old).issue(session, 1);
    let phone_hash = PhoneIndex::new(&old).of(PHONE);
    // A session-key row, sealed bound to its address (the app and the account's keyed hash).
    let appid = domain::AppId::parse("wx0123456789abcdef").unwrap();
    let account = infra::personal_data::LookupIndex::new(&old)
        .account(&appid, &domain::OpenId::parse("o1").unwrap());
    let address = format!("{appid}:{}", account.as_str());
    let session_key = old
        .sealer("session-key")
        .seal(b"session-key", address.as_bytes());
    db.store
        .put_session_key(appid.as_str(), &account, &session_key)
        .await
        .unwrap();
    let user = UserId::from_uuid(uuid::Uuid::now_v7());
    let context = format!("user:{user}");
    let data_key = old
        .sealer("user-data-key")
        .seal(&[7; 32], context.as_bytes());
    db.store.insert_data_key(user, &data_key).await.unwrap();

    let keyring = keyring::open(db.store.as_ref(), &keys(&old, None))
        .await
        .unwrap();
    assert_eq!(PhoneIndex::new(&keyring.lookup).of(PHONE), phone_hash);
    assert_eq!(
        RefreshTokens::new(&keyring.sealing)
            .verify(&refresh)
            .unwrap(),
        (session, 1)
    );
    AccessTokens::load_or_create(db.store.as_ref(), &keyring.sealing, policy())
        .await
        .expect("the stored signing key opens under the keyring");

    let new = MasterKey::generate();
    let rotation = keyring::rotate_master(db.store.as_ref(), &keys(&new, Some(&old)), false)
        .await
        .unwrap();
    assert_eq!((rotation.rewrapped, rotation.current), (1, 0));
    assert!(
        rotation.legacy_root,
        "the sealing root was the old master key"
    );
    assert!(rotation.new_root, "so it was replaced");
    assert_eq!(rotation.resealed, [1, 1, 1]);

    let keyring = keyring::open(db.store.as_ref(), &keys(&new, None))
        .await
        .unwrap();
    assert_eq!(
        PhoneIndex::new(&keyring.lookup).of(PHONE),
        phone_hash,
        "look-ups keep working"
    );
    assert!(
        RefreshTokens::new(&keyring.sealing)
            .verify(&refresh)
            .is_err(),
        "refresh tokens MAC'd under the old root no longer verify"
    );
    AccessTokens::load_or_create(db.store.as_ref(), &keyring.sealing, policy())
        .await
        .expect("the signing key opens under the new root");
    let stored_session_key = db
        .store
        .session_key(appid.as_str(), &account)
        .await
        .unwrap()
        .unwrap();
    let stored_data_key = db.store.data_key(user).await.unwrap().unwrap();
    assert_eq!(
        keyring
            .sealing
            .sealer("session-key")
            .open(&stored_session_key, address.as_bytes())
            .unwrap(),
        b"session-key"
    );
    assert_eq!(
        keyring
            .sealing
            .sealer("user-data-key")
            .open(&stored_data_key, context.as_bytes())
            .unwrap(),
        [7; 32]
    );
    // The old master key, with a copy of the database as it is now, opens no sealed row.
    let signing_key = &db.store.signing_keys().await.unwrap()[0];
    assert!(old
        .sealer("signing-key")
        .open(&signing_key.sealed_private_key, signing_key.kid.as_bytes())
        .is_err());
    assert!(old
        .sealer("session-key")
        .open(&stored_session_key, address.as_bytes())
        .is_err());
    assert!(old
        .sealer("user-data-key")
        .open(&stored_data_key, context.as_bytes())
        .is_err());
    assert!(
        RefreshTokens::new(&old).verify(&refresh).is_ok(),
        "(its own MAC, unused)"
    );

    let again = keyring::rotate_master(db.store.as_ref(), &keys(&new, Some(&old)), false)
        .await
        .unwrap();
    assert!(
        !again.legacy_root && !again.new_root,
        "idempotent: {again:?}"
    );
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
        .unwrap()
        .lookup;
    let phone_hash = PhoneIndex::new(&root).of(PHONE);
    assert_ne!(phone_hash, PhoneIndex::new(&old).of(PHONE), "a random root");
    // A second instance starting on the same database gets the same root.
    let again = keyring::open(db.store.as_ref(), &keys(&old, None))
        .await
        .unwrap()
        .lookup;
    assert_eq!(PhoneIndex::new(&again).of(PHONE), phone_hash);

    let new = MasterKey::generate();
    // During a rolling restart, an instance with both keys opens the keyring before and after.
    let rolling = keyring::open(db.store.as_ref(), &keys(&new, Some(&old)))
        .await
        .unwrap()
        .lookup;
    assert_eq!(PhoneIndex::new(&rolling).of(PHONE), phone_hash);
    let rotation = keyring::rotate_master(db.store.as_ref(), &keys(&new, Some(&old)), false)
        .await
        .unwrap();
    assert_eq!((rotation.rewrapped, rotation.current), (1, 0));
    assert!(!rotation.legacy_root, "a random root is no master key");
    let rotation = keyring::rotate_master(db.store.as_ref(), &keys(&new, Some(&old)), false)
        .await
        .unwrap();
    assert_eq!((rotation.rewrapped, rotation.current), (0, 1), "idempotent");

    for (current, previous) in [(&new, None), (&new, Some(&old))] {
        let root = keyring::open(db.store.as_ref(), &keys(current, previous))
            .await
            .unwrap()
            .lookup;
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
