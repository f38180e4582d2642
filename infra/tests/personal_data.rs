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
    let again = data
        .seal(store.as_ref(), alice, &json!("+8613800138000"))
        .await
        .unwrap();
    let opened = data
        .open_all(store.as_ref(), alice, &[&sealed, &again])
        .await
        .unwrap();
    assert_eq!(
        opened,
        vec![Some(profile.clone()), Some(json!("+8613800138000"))]
    );

    // Bound to its user: another user's key does not open it.
    data.seal(store.as_ref(), bob, &json!("x")).await.unwrap();
    assert!(data
        .open_all(store.as_ref(), bob, &[&sealed])
        .await
        .is_err());
    // And to the master key.
    assert!(PersonalData::new(&MasterKey::generate())
        .open_all(store.as_ref(), alice, &[&sealed])
        .await
        .is_err());

    data.destroy(store.as_ref(), alice).await.unwrap();
    let shredded = data
        .open_all(store.as_ref(), alice, &[&sealed, &again])
        .await
        .unwrap();
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
    assert!(
        opened.iter().all(Option::is_some),
        "every seal opens under the one stored key"
    );
}

/// Erasure frees the person's claims in the same append, so they may register afresh.
async fn erasure_releases_claims(store: Arc<dyn Store>) {
    use domain::{Actor, AppId, Claim, EventId, Metadata, OpenId};
    use infra::store::{AppendBatch, ExpectedVersion, NewEvent};

    let user = UserId::from_uuid(Uuid::now_v7());
    let account = Claim::WeChatAccount {
        appid: AppId::parse("wx00000000000000aa").unwrap(),
        openid: OpenId::parse("erase-me").unwrap(),
    };
    let event = |event_type: &str| NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: event_type.into(),
        schema_version: 1,
        occurred_at: chrono::Utc::now(),
        payload: json!({}),
        metadata: Metadata {
            actor: Actor::System,
            appid: None,
            client_ip: None,
            user_agent: None,
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        },
    };
    store
        .append(
            AppendBatch::default()
                .stream(
                    user.stream(),
                    ExpectedVersion::NoStream,
                    vec![event("UserRegistered")],
                )
                .claim(account.clone(), user),
        )
        .await
        .unwrap();
    assert_eq!(store.find_claim(&account).await.unwrap(), Some(user));
    store
        .append(
            AppendBatch::default()
                .stream(
                    user.stream(),
                    ExpectedVersion::Exactly(1),
                    vec![event("UserErased")],
                )
                .release_claims_of(user),
        )
        .await
        .unwrap();
    assert_eq!(store.find_claim(&account).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sealing() {
    let (store, _) = infra::testing::sqlite_store().await;
    sealing_opens_until_the_key_is_destroyed(Arc::clone(&store)).await;
    erasure_releases_claims(Arc::clone(&store)).await;
    concurrent_first_seals_share_one_key(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sealing() {
    if let Some((store, _)) = infra::testing::postgres_store().await {
        sealing_opens_until_the_key_is_destroyed(Arc::clone(&store)).await;
        erasure_releases_claims(Arc::clone(&store)).await;
        concurrent_first_seals_share_one_key(store).await;
    }
}
