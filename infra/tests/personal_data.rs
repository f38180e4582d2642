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

    let sealed = data
        .key_or_create(store.as_ref(), alice)
        .await
        .unwrap()
        .seal(&profile);
    assert!(!sealed.0.contains("Band"));
    let again = data
        .key_or_create(store.as_ref(), alice)
        .await
        .unwrap()
        .seal(&json!("+8613800138000"));
    let opened = data
        .open_all(store.as_ref(), alice, &[&sealed, &again])
        .await
        .unwrap();
    assert_eq!(
        opened,
        vec![Some(profile.clone()), Some(json!("+8613800138000"))]
    );

    // Bound to its user: another user's key does not open it.
    let bobs = data
        .key_or_create(store.as_ref(), bob)
        .await
        .unwrap()
        .seal(&json!("Bob's own"));
    assert!(data
        .open_all(store.as_ref(), bob, &[&sealed])
        .await
        .is_err());
    // And to the master key.
    assert!(PersonalData::new(&MasterKey::generate())
        .open_all(store.as_ref(), alice, &[&sealed])
        .await
        .is_err());

    store.destroy_data_key(alice).await.unwrap();
    let shredded = data
        .open_all(store.as_ref(), alice, &[&sealed, &again])
        .await
        .unwrap();
    assert_eq!(shredded, vec![None, None]);
    // Bob is untouched: his key still opens what it sealed.
    assert_eq!(
        data.open_all(store.as_ref(), bob, &[&bobs]).await.unwrap(),
        vec![Some(json!("Bob's own"))]
    );
}

async fn concurrent_first_seals_share_one_key(store: Arc<dyn Store>) {
    let data = Arc::new(PersonalData::new(&MasterKey::generate()));
    let user = UserId::from_uuid(Uuid::now_v7());
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (data, store) = (Arc::clone(&data), Arc::clone(&store));
        tasks.push(tokio::spawn(async move {
            data.key_or_create(store.as_ref(), user)
                .await
                .unwrap()
                .seal(&json!(n))
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

/// The append that erases `user` (registered, nothing since): `event`, and their claims freed.
fn erasure(user: UserId, event: infra::store::NewEvent) -> infra::store::AppendBatch {
    use infra::store::{AppendBatch, ExpectedVersion};
    AppendBatch::default()
        .stream(user.stream(), ExpectedVersion::Exactly(1), vec![event])
        .release_claims_of(user)
}

/// Erasure frees the person's claims in the same append, so they may register afresh.
async fn erasure_releases_claims(store: Arc<dyn Store>) {
    use domain::{Actor, AppId, Claim, EventId, Metadata, OpenId};
    use infra::store::{AppendBatch, ExpectedVersion, NewEvent};

    let user = UserId::from_uuid(Uuid::now_v7());
    let account = infra::personal_data::LookupIndex::new(&MasterKey::generate()).claim(
        &Claim::WeChatAccount {
            appid: AppId::parse("wx00000000000000aa").unwrap(),
            openid: OpenId::parse("erase-me").unwrap(),
        },
    );
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
        .append(erasure(user, event("UserErased")))
        .await
        .unwrap();
    assert_eq!(store.find_claim(&account).await.unwrap(), None);
}

fn new_event(
    event_type: &str,
    schema_version: u32,
    payload: serde_json::Value,
    metadata: domain::Metadata,
) -> infra::store::NewEvent {
    infra::store::NewEvent {
        event_id: domain::EventId::from_uuid(Uuid::now_v7()),
        event_type: event_type.into(),
        schema_version,
        occurred_at: chrono::Utc::now(),
        payload,
        metadata,
    }
}

fn metadata_from(ip: Option<&str>, agent: Option<&str>) -> domain::Metadata {
    domain::Metadata {
        actor: domain::Actor::System,
        appid: None,
        client_ip: ip.map(str::to_owned),
        user_agent: agent.map(str::to_owned),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    }
}

/// Erasure is atomic: the append of `UserErased` deletes the data key in its own transaction
/// (no window in which a crash leaves an erased user's fields readable); an append that fails
/// leaves the key alone.
async fn erasure_destroys_the_key_in_its_append(store: Arc<dyn Store>) {
    use infra::store::{AppendBatch, AppendError, ExpectedVersion};

    let data = PersonalData::new(&MasterKey::generate());
    let user = UserId::from_uuid(Uuid::now_v7());
    let other = UserId::from_uuid(Uuid::now_v7());
    let sealed = data
        .key_or_create(store.as_ref(), user)
        .await
        .unwrap()
        .seal(&json!("secret"));
    data.key_or_create(store.as_ref(), other)
        .await
        .unwrap()
        .seal(&json!("x"));
    let meta = || metadata_from(None, None);
    store
        .append(AppendBatch::default().stream(
            user.stream(),
            ExpectedVersion::NoStream,
            vec![new_event("UserRegistered", 2, json!({}), meta())],
        ))
        .await
        .unwrap();
    // A refused erasure (the stream moved) keeps the key.
    let refused = store
        .append(AppendBatch::default().stream(
            user.stream(),
            ExpectedVersion::Exactly(7),
            vec![new_event("UserErased", 1, json!({}), meta())],
        ))
        .await;
    assert!(matches!(refused, Err(AppendError::VersionConflict(_))));
    assert!(data.key(store.as_ref(), user).await.unwrap().is_some());

    store
        .append(erasure(user, new_event("UserErased", 1, json!({}), meta())))
        .await
        .unwrap();
    assert!(
        store.data_key(user).await.unwrap().is_none(),
        "the key went with the event"
    );
    assert_eq!(
        data.open_all(store.as_ref(), user, &[&sealed])
            .await
            .unwrap(),
        vec![None]
    );
    assert!(
        store.data_key(other).await.unwrap().is_some(),
        "only the erased user's key"
    );
    store.purge_deleted().await.unwrap();
}

/// The one-time migration seals what older events hold in clear, blanks it for erased users,
/// strips rejected logins, re-keys the claims, and runs once.
async fn the_migration_seals_the_old_log(store: Arc<dyn Store>, url: String) {
    use domain::{AppId, Claim, OpenId, UnionId};
    use infra::personal_data::migration::{self, seal_personal_data, MigrationReport};
    use infra::personal_data::{open_event, LookupIndex};
    use infra::store::{AppendBatch, ExpectedVersion};

    let master = MasterKey::generate();
    let data = PersonalData::new(&master);
    let index = LookupIndex::new(&master);
    let app = "wx0123456789abcdef";
    let (alice, gone) = (
        UserId::from_uuid(Uuid::now_v7()),
        UserId::from_uuid(Uuid::now_v7()),
    );
    let session = Uuid::now_v7();
    let clear_claim = |claim: Claim| {
        let (kind, value) = claim.key();
        infra::store::ClaimKey { kind, value }
    };
    let alice_account = Claim::WeChatAccount {
        appid: AppId::parse(app).unwrap(),
        openid: OpenId::parse("o_alice_clear").unwrap(),
    };
    // Written as before sealing: v1 payloads, clear metadata, clear claims.
    let ip = Some("198.51.100.23");
    let agent = Some("Mozilla/5.0 AliceAgent");
    store
        .append(
            AppendBatch::default()
                .stream(
                    alice.stream(),
                    ExpectedVersion::NoStream,
                    vec![
                        new_event("UserRegistered", 1,
                            json!({"user_id": alice, "appid": app, "openid": "o_alice_clear"}),
                            metadata_from(ip, agent)),
                        new_event("UnionIdLinked", 1,
                            json!({"unionid": "u_alice_clear", "source": "code2_session"}),
                            metadata_from(ip, agent)),
                        new_event("UserBlocked", 1, json!({"reason": "alice-block-reason"}),
                            metadata_from(Some("192.0.2.99"), None)),
                        // A clear reason that looks sealed is clear all the same.
                        new_event("UserUnblocked", 1, json!({"reason": "pd1. Alice Lookalike"}),
                            metadata_from(None, None)),
                        new_event("PhoneNumberBound", 1,
                            json!({"phone": "pd1.sealed-phone", "phone_index": "alice-phone-hash"}),
                            metadata_from(None, None)),
                    ],
                )
                .stream(
                    domain::StreamId::from_stored(format!("session-{session}")),
                    ExpectedVersion::NoStream,
                    vec![
                        new_event("UserLoggedIn", 1,
                            json!({"session_id": session, "user_id": alice, "appid": app,
                                   "openid": "o_alice_clear", "is_new_user": true,
                                   "client_ip": "198.51.100.23", "device": "Mozilla/5.0 AliceAgent"}),
                            metadata_from(ip, agent)),
                        new_event("SessionRefreshed", 1, json!({"generation": 1}), metadata_from(ip, agent)),
                    ],
                )
                .claim(clear_claim(alice_account.clone()), alice)
                .claim(clear_claim(Claim::UnionId(UnionId::parse("u_alice_clear").unwrap())), alice),
        )
        .await
        .unwrap();
    store
        .append(AppendBatch::default().stream(
            gone.stream(),
            ExpectedVersion::NoStream,
            vec![
                new_event(
                    "UserRegistered",
                    1,
                    json!({"user_id": gone, "appid": app, "openid": "o_gone_clear"}),
                    metadata_from(Some("203.0.113.66"), Some("GoneAgent")),
                ),
                new_event(
                    "PhoneNumberBound",
                    1,
                    json!({"phone": "pd1.sealed-phone", "phone_index": "gone-phone-hash"}),
                    metadata_from(None, None),
                ),
                new_event("UserErased", 1, json!({}), metadata_from(None, None)),
            ],
        ))
        .await
        .unwrap();
    store
        .append(AppendBatch::default().stream(
            domain::StreamId::from_stored(format!("app-{app}")),
            ExpectedVersion::Any,
            vec![new_event(
                "LoginRejected",
                1,
                json!({"appid": app, "reason": "blocked", "openid": "o_alice_clear",
                       "client_ip": "198.51.100.23"}),
                metadata_from(ip, agent),
            )],
        ))
        .await
        .unwrap();

    testkit::wait_until_log_readable(&url).await;
    testkit::put_clear_session_key(&url, app, "o_alice_clear", b"sealed-session-key").await;
    // Two instances starting together: one migrates, the other waits and finds it done.
    let other = infra::store::connect(&url).await.unwrap();
    let (report, second) = tokio::join!(
        seal_personal_data(store.as_ref(), &data, &index, chrono::Utc::now()),
        seal_personal_data(other.as_ref(), &data, &index, chrono::Utc::now()),
    );
    let (report, second) = match (report.unwrap(), second.unwrap()) {
        (first, second) if first.already_done => (second, first),
        both => both,
    };
    assert!(!report.already_done, "{report:?}");
    assert!(second.already_done, "both instances migrated: {second:?}");
    // The read models must be rebuilt, and a crash before that cannot skip it.
    assert!(store
        .one_time_done(migration::REBUILD_PENDING)
        .await
        .unwrap());
    // The erased user stays keyless, whatever tries to make them a key.
    assert!(store.data_key(gone).await.unwrap().is_none());
    let _ = data.create_key(store.as_ref(), gone).await;
    assert!(
        store.data_key(gone).await.unwrap().is_none(),
        "an erased user got a data key"
    );
    assert_eq!(report.session_keys_dropped, 1, "{report:?}");
    assert!(
        store.session_key_accounts().await.unwrap().is_empty(),
        "the clear-addressed row is gone"
    );
    assert!(report.events_sealed >= 5, "{report:?}");
    assert_eq!(report.events_blanked, 2, "{report:?}");
    assert!(report.rejections_stripped >= 1, "{report:?}");
    assert!(report.claims_rekeyed >= 2, "{report:?}");

    let log = store.read_all(0, 1000).await.unwrap();
    let stored = format!("{:?}", log);
    // Alice's clear values: sealed in the log, and opened again with her key.
    let alices = [
        "o_alice_clear",
        "u_alice_clear",
        "alice-block-reason",
        "198.51.100.23",
        "AliceAgent",
        "192.0.2.99",
    ];
    for clear in alices.into_iter().chain([
        "o_gone_clear",
        "203.0.113.66",
        "GoneAgent",
        "Alice Lookalike",
        "alice-phone-hash",
        "gone-phone-hash",
        "phone_index",
    ]) {
        assert!(!stored.contains(clear), "{clear} is still in the log");
    }
    // The phone's look-up hash moved to the deletable table, for the living user only.
    assert_eq!(report.phones_indexed, 1, "{report:?}");
    assert_eq!(
        store.users_by_phone("alice-phone-hash").await.unwrap(),
        vec![alice]
    );
    assert!(store
        .users_by_phone("gone-phone-hash")
        .await
        .unwrap()
        .is_empty());
    let claims = format!("{:?}", store.claims().await.unwrap());
    assert!(!claims.contains("o_alice_clear") && !claims.contains("u_alice_clear"));
    assert_eq!(
        store
            .find_claim(&index.claim(&alice_account))
            .await
            .unwrap(),
        Some(alice)
    );

    // Alice's fields open again with her key, as the current schema version.
    let key = data.key(store.as_ref(), alice).await.unwrap().unwrap();
    let mut mine: Vec<_> = log
        .iter()
        .filter(|e| {
            e.stream_id == alice.stream() || e.stream_id.as_str() == format!("session-{session}")
        })
        .cloned()
        .collect();
    for e in &mut mine {
        open_event(e, Some(&key));
    }
    let opened = format!("{mine:?}");
    for clear in alices.into_iter().chain(["pd1. Alice Lookalike"]) {
        assert!(opened.contains(clear), "{clear} does not open");
    }
    let registered = mine
        .iter()
        .find(|e| e.event_type == "UserRegistered")
        .unwrap();
    assert_eq!(registered.schema_version, 2);
    let login = mine
        .iter()
        .find(|e| e.event_type == "UserLoggedIn")
        .unwrap();
    assert_eq!(
        login.payload["device"]["user_agent"],
        "Mozilla/5.0 AliceAgent"
    );

    // Once only.
    let again = seal_personal_data(store.as_ref(), &data, &index, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(
        again,
        MigrationReport {
            already_done: true,
            ..MigrationReport::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sealing() {
    let (store, _) = testkit::fresh_store(testkit::Backend::Sqlite)
        .await
        .unwrap();
    sealing_opens_until_the_key_is_destroyed(Arc::clone(&store)).await;
    erasure_releases_claims(Arc::clone(&store)).await;
    erasure_destroys_the_key_in_its_append(Arc::clone(&store)).await;
    concurrent_first_seals_share_one_key(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_migration() {
    let (store, url) = testkit::fresh_store(testkit::Backend::Sqlite)
        .await
        .unwrap();
    the_migration_seals_the_old_log(store, url).await;
}

/// Rows deleted before `secure_delete` was on stay in SQLite's free pages until the one-time
/// migration's `VACUUM`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_migration_vacuums_rows_deleted_before_secure_delete() {
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    const MARKER: &str = "leftover-openid-of-an-erased-user-8812";
    let (store, url) = testkit::fresh_store(testkit::Backend::Sqlite)
        .await
        .unwrap();
    let mut old = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
        .unwrap()
        .pragma("secure_delete", "OFF")
        .connect()
        .await
        .unwrap();
    // Three rows holding the marker, deleted while `secure_delete` is off.
    let insert = format!("INSERT INTO leftover (value) VALUES ('{MARKER}')");
    let create = "CREATE TABLE leftover (value TEXT)";
    for sql in [create, &insert, &insert, &insert, "DELETE FROM leftover"] {
        sqlx::query(sql).execute(&mut old).await.unwrap();
    }
    old.close().await.unwrap();
    store.purge_deleted().await.unwrap();
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .to_owned();
    let files = || {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            bytes.extend(std::fs::read(format!("{path}{suffix}")).unwrap_or_default());
        }
        String::from_utf8_lossy(&bytes).contains(MARKER)
    };
    assert!(
        files(),
        "the test did not leave a deleted row in a free page"
    );

    let master = MasterKey::generate();
    infra::personal_data::migration::seal_personal_data(
        store.as_ref(),
        &PersonalData::new(&master),
        &infra::personal_data::LookupIndex::new(&master),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert!(
        !files(),
        "a row deleted before secure_delete is still in the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_migration() {
    if let Some((store, url)) = testkit::fresh_store(testkit::Backend::Postgres).await {
        the_migration_seals_the_old_log(store, url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sealing() {
    if let Some((store, _)) = testkit::fresh_store(testkit::Backend::Postgres).await {
        sealing_opens_until_the_key_is_destroyed(Arc::clone(&store)).await;
        erasure_releases_claims(Arc::clone(&store)).await;
        erasure_destroys_the_key_in_its_append(Arc::clone(&store)).await;
        concurrent_first_seals_share_one_key(store).await;
    }
}
