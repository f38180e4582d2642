//! Crypto-shredding: personal data sealed under per-user keys opens until the key is destroyed.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use domain::UserId;
use infra::crypto::MasterKey;
use infra::personal_data::PersonalData;
use infra::store::Store;
use serde_json::json;
use uuid::Uuid;

async fn sealing_opens_until_the_key_is_destroyed(store: Arc<dyn Store>) {
    let master = MasterKey::generate();
    let data = PersonalData::new(&master);
    let alice = UserId::from_uuid(Uuid::now_v7());
    let bob = UserId::from_uuid(Uuid::now_v7());
    let profile = json!({ "nickname": "Band", "city": "Guangzhou" });

    let sealed = data.seal(store.as_ref(), alice, &profile).await.unwrap();
    assert!(!sealed.0.contains("Band"));
    let again = data.seal(store.as_ref(), alice, &json!("+8613800138000")).await.unwrap();
    let opened = data.open_all(store.as_ref(), alice, &[&sealed, &again]).await.unwrap();
    assert_eq!(opened, vec![Some(profile.clone()), Some(json!("+8613800138000"))]);

    // Bound to its user: another user's key does not open it.
    data.seal(store.as_ref(), bob, &json!("x")).await.unwrap();
    assert!(data.open_all(store.as_ref(), bob, &[&sealed]).await.is_err());
    // And to the master key.
    assert!(PersonalData::new(&MasterKey::generate())
        .open_all(store.as_ref(), alice, &[&sealed])
        .await
        .is_err());

    data.destroy(store.as_ref(), alice).await.unwrap();
    let shredded = data.open_all(store.as_ref(), alice, &[&sealed, &again]).await.unwrap();
    assert_eq!(shredded, vec![None, None]);
    // Bob is untouched.
    assert!(data.open_all(store.as_ref(), bob, &[]).await.is_ok());
}

async fn concurrent_first_seals_share_one_key(store: Arc<dyn Store>) {
    let data = Arc::new(PersonalData::new(&MasterKey::generate()));
    let user = UserId::from_uuid(Uuid::now_v7());
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (data, store) = (Arc::clone(&data), Arc::clone(&store));
        tasks.push(tokio::spawn(async move {
            data.seal(store.as_ref(), user, &json!(n)).await.unwrap()
        }));
    }
    let mut sealed = Vec::new();
    for task in tasks {
        sealed.push(task.await.unwrap());
    }
    let refs: Vec<_> = sealed.iter().collect();
    let opened = data.open_all(store.as_ref(), user, &refs).await.unwrap();
    assert!(opened.iter().all(Option::is_some), "every seal opens under the one stored key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sealing() {
    let (store, _) = infra::testing::sqlite_store().await;
    sealing_opens_until_the_key_is_destroyed(Arc::clone(&store)).await;
    concurrent_first_seals_share_one_key(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sealing() {
    if let Some((store, _)) = infra::testing::postgres_store().await {
        sealing_opens_until_the_key_is_destroyed(Arc::clone(&store)).await;
        concurrent_first_seals_share_one_key(store).await;
    }
}
