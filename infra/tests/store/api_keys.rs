//! API keys: created, listed, looked up and revoked, secrets kept as hashes.

use std::collections::BTreeSet;

use chrono::{Duration, SubsecRound, Utc};
use infra::api_keys::{self, Scope};

use super::Db;

pub async fn api_keys_are_listed_and_revoked(db: Db) {
    let now = Utc::now().trunc_subsecs(6);
    let first = api_keys::generate("ops", BTreeSet::from([Scope::AdminRead]), now);
    let second = api_keys::generate(
        "analytics",
        BTreeSet::from([Scope::EventsRead, Scope::AdminRead]),
        now + Duration::seconds(1),
    );
    assert!(db.store.api_keys().await.unwrap().is_empty());
    // Inserted newest first, listed oldest first.
    for key in [&second, &first] {
        db.store.insert_api_key(&key.stored).await.unwrap();
    }
    assert_eq!(
        db.store.api_keys().await.unwrap(),
        [first.stored.clone(), second.stored.clone()]
    );

    let revoked_at = now + Duration::seconds(5);
    let revoked = db
        .store
        .revoke_api_key(&first.stored.key_id, revoked_at)
        .await
        .unwrap()
        .expect("the key exists");
    assert_eq!(revoked.revoked_at, Some(revoked_at));
    assert_eq!(
        db.store.api_key(&first.stored.key_id).await.unwrap(),
        Some(revoked.clone())
    );
    // Revoking again keeps the first revocation time; the other key is untouched.
    let again = db
        .store
        .revoke_api_key(&first.stored.key_id, revoked_at + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(again, Some(revoked.clone()));
    assert_eq!(db.store.api_keys().await.unwrap(), [revoked, second.stored]);
    assert_eq!(
        db.store
            .revoke_api_key("0123456789abcdef", revoked_at)
            .await
            .unwrap(),
        None
    );
}
