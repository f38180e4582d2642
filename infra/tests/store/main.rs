//! The store's behaviour, one suite for both backends: every test runs against a fresh SQLite
//! file and, when `IDENTITY_TEST_POSTGRES_URL` is set, a fresh PostgreSQL schema.
//!
//! Test bodies are plain async functions taking a `Db`; `both_backends!` makes the tests.

// A failed unwrap is a failed test; the helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

mod api_keys;
mod avatars;
mod cancellation;
mod concurrency;
mod console_sessions;
mod keyring;
mod plans;
mod trust;

use api_keys::*;
use avatars::*;
use concurrency::*;
use console_sessions::*;
use keyring::*;
use plans::*;
use trust::*;

use std::time::{Duration, Instant};

use chrono::{SubsecRound, TimeZone, Utc};
use domain::{Actor, AppId, Claim, EventId, Metadata, OpenId, StreamId, UnionId, UserId};
use infra::crypto::MasterKey;
use infra::personal_data::LookupIndex;
use infra::store::{
    self, AppendBatch, AppendError, ExpectedVersion, NewEvent, RecordedEvent, Store,
};
use infra::store::{AccountKey, ClaimKey};
use serde_json::json;
use uuid::Uuid;

/// Each test body takes a store on a fresh database (`db.store`, `db.url`).
use testkit::{both_backends, TestDb as Db};

both_backends!(
    Db:
    append_and_load_round_trip,
    reconnecting_keeps_everything,
    expected_version_is_enforced,
    any_appends_to_whatever_is_there,
    a_conflict_on_one_stream_writes_nothing,
    taken_claims_refuse_the_whole_append,
    reclaiming_your_own_claim_is_fine,
    read_all_pages_through_the_log,
    session_keys_are_replaced,
    a_session_key_commits_with_its_append,
    only_the_first_signing_key_is_kept,
    concurrent_readers_see_every_event_once_in_order,
    one_of_many_rival_claims_wins,
    a_big_append_numbers_every_stream_in_order,
    several_streams_load_in_one_read,
    a_claimant_loads_with_their_stream,
    releasing_a_users_claims_looks_them_up_by_user,
    api_keys_are_listed_and_revoked,
    rotate_master_gives_a_deployment_that_predates_the_keyring_a_new_sealing_root,
    rotate_master_rewraps_the_keyring_and_keeps_every_subkey,
    attempts_are_counted_per_window_and_given_back,
    rejections_are_tallied_bounded_and_forgotten,
    appending_user_erased_forgets_the_users_tallies,
    avatars_go_when_deleted_or_their_owner_is_erased,
    console_sessions_are_bounded_per_key_and_by_age,
);

fn event(event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: event_type.to_owned(),
        schema_version: 1,
        occurred_at: Utc::now(),
        payload,
        metadata: Metadata::system(Uuid::now_v7()),
    }
}

/// The whole log, once at least `count` events are visible. On PostgreSQL a commit becomes
/// visible to `read_all` only when every older writing transaction on the server (other tests
/// included) has ended, so tests wait for it rather than read once.
async fn visible_log(store: &dyn Store, count: usize) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = store.read_all(0, 10_000).await.unwrap();
        if log.len() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} events are visible",
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stream(name: &str) -> StreamId {
    StreamId::from_stored(name.to_owned())
}

fn new_user() -> UserId {
    UserId::from_uuid(Uuid::now_v7())
}

static INDEX: std::sync::LazyLock<LookupIndex> =
    std::sync::LazyLock::new(|| LookupIndex::new(&MasterKey::generate()));

/// Claims are stored by keyed hash, as the service writes them.
fn claim_key(claim: &Claim) -> ClaimKey {
    INDEX.claim(claim)
}

/// Where the session-key vault keeps `openid`'s key on the app `appid`.
fn vault_address(appid: &str, openid: &str) -> AccountKey {
    INDEX.account(
        &AppId::parse(appid).unwrap(),
        &OpenId::parse(openid).unwrap(),
    )
}

fn account(openid: &str) -> ClaimKey {
    claim_key(&Claim::WeChatAccount {
        appid: AppId::parse("wx0123456789abcdef").unwrap(),
        openid: OpenId::parse(openid).unwrap(),
    })
}

fn one(stream_id: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch::default().stream(stream_id.clone(), expected, events)
}

/// Appends `events` to the one stream `stream_id`, as `one` batches them.
async fn append_one(
    db: &Db,
    stream_id: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Vec<RecordedEvent>, AppendError> {
    db.store.append(one(stream_id, expected, events)).await
}

/// Two events, `A` and `B`, numbered 1 and 2.
fn a_and_b() -> Vec<NewEvent> {
    vec![event("A", json!(1)), event("B", json!(2))]
}

/// Who holds the WeChat account `openid`, with their stream.
async fn claimant_of(db: &Db, openid: &str) -> Option<(UserId, Vec<RecordedEvent>)> {
    let claimant = db
        .store
        .load_claimant(&account(openid), None)
        .await
        .unwrap();
    claimant.map(|c| (c.user, c.events))
}

/// Everything stored on `stream_id`.
async fn load(db: &Db, stream_id: &StreamId) -> Vec<RecordedEvent> {
    db.store.load_stream(stream_id).await.unwrap()
}

fn assert_conflict_on(result: Result<Vec<RecordedEvent>, AppendError>, on: &StreamId) {
    match result {
        Err(AppendError::VersionConflict(s)) => assert_eq!(&s, on),
        other => panic!("expected a version conflict on {on}, got {other:?}"),
    }
}

async fn append_and_load_round_trip(db: Db) {
    let user = new_user();
    let mut first = event(
        "UserRegistered",
        json!({"user_id": user, "nested": {"list": [1, 2.5, "x", null, true]}}),
    );
    // Nanoseconds: the store keeps microseconds, and must return what it will read back.
    first.occurred_at = Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 58).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    first.schema_version = 3;
    first.metadata = Metadata {
        actor: Actor::User(user),
        appid: Some(AppId::parse("wx0123456789abcdef").unwrap()),
        client_ip: Some("203.0.113.7".into()),
        user_agent: Some("Mozilla/5.0 中文 \"quoted\"".into()),
        correlation_id: Uuid::now_v7(),
        causation_id: Some(Uuid::now_v7()),
    };
    let second = event(
        "WeChatAccountLinked",
        json!({"appid": "wx0123456789abcdef", "openid": "o-1"}),
    );
    let inputs = vec![first.clone(), second.clone()];

    let recorded = append_one(
        &db,
        &user.stream(),
        ExpectedVersion::NoStream,
        inputs.clone(),
    )
    .await
    .unwrap();
    assert_eq!(recorded.len(), 2);
    for ((got, input), version) in recorded.iter().zip(&inputs).zip(1..) {
        assert_eq!(got.event_id, input.event_id);
        assert_eq!(got.stream_id, user.stream());
        assert_eq!(got.stream_version, version);
        assert_eq!(got.event_type, input.event_type);
        // Read back upcast to the current version (a newer one stays as written).
        assert_eq!(
            got.schema_version,
            input
                .schema_version
                .max(domain::upcast::current_version(&input.event_type))
        );
        assert_eq!(got.occurred_at, input.occurred_at.trunc_subsecs(6));
        assert_eq!(got.payload, input.payload);
        assert_eq!(got.metadata, input.metadata);
    }
    assert!(recorded[0].position < recorded[1].position);

    assert_eq!(load(&db, &user.stream()).await, recorded);
    assert_eq!(visible_log(&*db.store, 2).await, recorded);
    assert!(load(&db, &stream("user-nobody")).await.is_empty());

    let third = append_one(
        &db,
        &user.stream(),
        ExpectedVersion::Exactly(2),
        vec![event("X", json!(null))],
    )
    .await
    .unwrap();
    assert_eq!(third[0].stream_version, 3);
    assert!(third[0].position > recorded[1].position);
    assert_eq!(load(&db, &user.stream()).await.len(), 3);
}

async fn reconnecting_keeps_everything(db: Db) {
    let s = stream("app-wx0123456789abcdef");
    let recorded = append_one(
        &db,
        &s,
        ExpectedVersion::Any,
        vec![event("AppSeen", json!({}))],
    )
    .await
    .unwrap();
    db.store.ping().await.unwrap();
    testkit::wait_until_log_readable(&db.url).await;
    assert_eq!(db.store.read_all(0, 10).await.unwrap(), recorded);
    // The migrations run again (as a no-op) and the data is all there.
    let again = store::connect(&db.url).await.unwrap();
    assert_eq!(again.backend(), db.store.backend());
    assert_eq!(again.load_stream(&s).await.unwrap(), recorded);
    for refused in ["mysql://localhost/x", "sqlite::memory:"] {
        assert!(
            matches!(
                store::connect(refused).await,
                Err(store::StoreError::UnsupportedUrl(_))
            ),
            "{refused}"
        );
    }
    match db.store.backend() {
        infra::database_url::Backend::Sqlite => {
            // `sqlite:path` names the same file as `sqlite://path`.
            let short = db.url.replacen("sqlite://", "sqlite:", 1);
            let again = store::connect(&short).await.unwrap();
            assert_eq!(again.load_stream(&s).await.unwrap(), recorded);
        }
        infra::database_url::Backend::Postgres => {
            let dump = testkit::dump_postgres_tables(&db.url).await;
            assert!(dump.contains("AppSeen"), "{dump}");
        }
    }
}

async fn expected_version_is_enforced(db: Db) {
    let s = stream("session-1");
    append_one(&db, &s, ExpectedVersion::NoStream, a_and_b())
        .await
        .unwrap();

    let missing = stream("session-missing");
    let refused = [
        (&s, ExpectedVersion::NoStream),
        (&s, ExpectedVersion::Exactly(1)),
        (&s, ExpectedVersion::Exactly(3)),
        (&s, ExpectedVersion::Exactly(0)),
        (&missing, ExpectedVersion::Exactly(1)),
    ];
    for (on, expected) in refused {
        let result = append_one(&db, on, expected, vec![event("C", json!(3))]).await;
        assert_conflict_on(result, on);
    }
    assert!(load(&db, &missing).await.is_empty());
    assert_eq!(load(&db, &s).await.len(), 2);

    let ok = append_one(
        &db,
        &s,
        ExpectedVersion::after(2),
        vec![event("C", json!(3))],
    )
    .await
    .unwrap();
    assert_eq!(ok[0].stream_version, 3);
}

async fn any_appends_to_whatever_is_there(db: Db) {
    let s = stream("app-wx0123456789abcdef");
    let first = append_one(&db, &s, ExpectedVersion::Any, a_and_b())
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2]
    );
    let second = append_one(&db, &s, ExpectedVersion::Any, vec![event("C", json!(3))])
        .await
        .unwrap();
    assert_eq!(second[0].stream_version, 3);
    assert_eq!(load(&db, &s).await.len(), 3);
}

/// Thousands of events over many streams, one of them named twice (as the benchmark's data
/// generator writes): more than one SQLite script, all in one transaction.
async fn a_big_append_numbers_every_stream_in_order(db: Db) {
    let streams: Vec<StreamId> = (0..300)
        .map(|i| stream(&format!("session-big-{i}")))
        .collect();
    let mut batch = AppendBatch::default();
    for (i, s) in streams.iter().enumerate() {
        let events = (0..10)
            .map(|k| event("E", json!({"stream": i, "k": k})))
            .collect();
        batch = batch.stream(s.clone(), ExpectedVersion::NoStream, events);
    }
    batch = batch.stream(
        streams[7].clone(),
        ExpectedVersion::Exactly(10),
        vec![event("E", json!({"stream": 7, "k": 10}))],
    );
    let written = db.store.append(batch).await.unwrap();
    assert_eq!(written.len(), 3001);
    assert!(written
        .windows(2)
        .all(|w| w[1].position == w[0].position + 1));
    let seventh = load(&db, &streams[7]).await;
    assert_eq!(
        seventh.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<i64>>()
    );
    assert_eq!(
        seventh.last().unwrap().payload,
        json!({"stream": 7, "k": 10})
    );
    for (event, stored) in written
        .iter()
        .zip(visible_log(db.store.as_ref(), 3001).await)
    {
        assert_eq!(event, &stored);
    }
}

async fn several_streams_load_in_one_read(db: Db) {
    let (a, b, other) = (stream("user-a"), stream("session-b"), stream("user-c"));
    for (i, s) in [&a, &b, &other, &a, &b, &a].into_iter().enumerate() {
        append_one(&db, s, ExpectedVersion::Any, vec![event("E", json!(i))])
            .await
            .unwrap();
    }
    let (user, keyless) = (new_user(), new_user());
    db.store.insert_data_key(user, b"sealed").await.unwrap();
    let (loaded, key) = db
        .store
        .load_streams_and_key(&[a.clone(), b.clone()], user)
        .await
        .unwrap();
    assert_eq!(
        key.as_deref(),
        Some(&b"sealed"[..]),
        "the user's key, read with the streams"
    );
    let of = |s: &StreamId| {
        loaded
            .iter()
            .filter(|e| &e.stream_id == s)
            .map(|e| (e.stream_version, e.payload.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(loaded.len(), 5, "nothing of other streams");
    assert_eq!(of(&a), [(1, json!(0)), (2, json!(3)), (3, json!(5))]);
    assert_eq!(of(&b), [(1, json!(1)), (2, json!(4))]);
    let (_, key) = db.store.load_streams_and_key(&[a], keyless).await.unwrap();
    assert_eq!(key, None, "a user without a key");
    let (none, _) = db
        .store
        .load_streams_and_key(&[stream("user-none")], user)
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn a_claimant_loads_with_their_stream(db: Db) {
    let (alice, bob) = (new_user(), new_user());
    for (user, openid) in [(alice, "o_alice"), (bob, "o_bob")] {
        db.store
            .append(
                one(
                    &user.stream(),
                    ExpectedVersion::NoStream,
                    vec![event("UserRegistered", json!({"n": 1}))],
                )
                .claim(account(openid), user),
            )
            .await
            .unwrap();
    }
    append_one(
        &db,
        &alice.stream(),
        ExpectedVersion::Exactly(1),
        vec![event("UnionIdLinked", json!({"n": 2}))],
    )
    .await
    .unwrap();

    let (user, events) = claimant_of(&db, "o_alice")
        .await
        .expect("alice holds her account");
    assert_eq!(user, alice);
    assert_eq!(
        events
            .iter()
            .map(|e| (e.stream_version, e.payload.clone()))
            .collect::<Vec<_>>(),
        [(1, json!({"n": 1})), (2, json!({"n": 2}))]
    );
    assert!(events.iter().all(|e| e.stream_id == alice.stream()));
    assert!(claimant_of(&db, "o_nobody").await.is_none());

    // The first claim held wins; the second is asked only for want of the first; the key comes
    // with the stream.
    db.store.insert_data_key(bob, b"bob's key").await.unwrap();
    let by = |first: &str, then: &str| {
        let (first, then) = (account(first), account(then));
        let store = &db.store;
        async move { store.load_claimant(&first, Some(&then)).await.unwrap() }
    };
    let found = by("o_bob", "o_alice").await.expect("bob holds his account");
    assert_eq!(
        (found.user, found.sealed_key.as_deref()),
        (bob, Some(&b"bob's key"[..]))
    );
    let found = by("o_alice", "o_bob").await.expect("alice holds hers");
    assert_eq!((found.user, found.sealed_key), (alice, None));
    let found = by("o_nobody", "o_bob")
        .await
        .expect("bob, for want of the first");
    assert_eq!(found.user, bob);
    assert!(by("o_nobody", "o_none").await.is_none());

    // Released claims have no claimant.
    db.store
        .append(
            one(
                &bob.stream(),
                ExpectedVersion::Exactly(1),
                vec![event("UserErased", json!({}))],
            )
            .release_claims_of(bob),
        )
        .await
        .unwrap();
    assert!(claimant_of(&db, "o_bob").await.is_none());
}

async fn a_conflict_on_one_stream_writes_nothing(db: Db) {
    let (a, b, c) = (stream("a-stream"), stream("b-stream"), stream("c-stream"));
    append_one(
        &db,
        &b,
        ExpectedVersion::NoStream,
        vec![event("B", json!(1))],
    )
    .await
    .unwrap();
    let before = visible_log(&*db.store, 1).await;

    // Given in reverse order; `a` is bumped first and must be undone.
    let batch = AppendBatch::default()
        .stream(c.clone(), ExpectedVersion::Any, vec![event("C", json!(1))])
        .stream(
            b.clone(),
            ExpectedVersion::NoStream,
            vec![event("B", json!(2))],
        )
        .stream(
            a.clone(),
            ExpectedVersion::NoStream,
            vec![event("A", json!(1))],
        );
    assert_conflict_on(db.store.append(batch).await, &b);
    assert!(load(&db, &a).await.is_empty());
    assert!(load(&db, &c).await.is_empty());
    assert_eq!(visible_log(&*db.store, before.len()).await, before);

    // The same streams, now right: all written, positions in batch order.
    let batch = AppendBatch::default()
        .stream(c.clone(), ExpectedVersion::Any, vec![event("C", json!(1))])
        .stream(
            b.clone(),
            ExpectedVersion::Exactly(1),
            vec![event("B", json!(2)), event("B", json!(3))],
        )
        .stream(
            a.clone(),
            ExpectedVersion::NoStream,
            vec![event("A", json!(1))],
        );
    let recorded = db.store.append(batch).await.unwrap();
    let streams: Vec<&str> = recorded.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, ["c-stream", "b-stream", "b-stream", "a-stream"]);
    assert_eq!(
        recorded
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        [1, 2, 3, 1]
    );
    assert!(recorded.windows(2).all(|w| w[0].position < w[1].position));
}

async fn taken_claims_refuse_the_whole_append(db: Db) {
    let (alice, bob) = (new_user(), new_user());
    let claim = account("o-alice");
    db.store
        .append(
            one(
                &alice.stream(),
                ExpectedVersion::NoStream,
                vec![event("UserRegistered", json!({}))],
            )
            .claim(claim.clone(), alice),
        )
        .await
        .unwrap();
    let before = visible_log(&*db.store, 1).await;

    let unionid = claim_key(&Claim::UnionId(UnionId::parse("union-bob").unwrap()));
    let result = db
        .store
        .append(
            one(
                &bob.stream(),
                ExpectedVersion::NoStream,
                vec![event("UserRegistered", json!({}))],
            )
            .claim(unionid.clone(), bob)
            .claim(claim.clone(), bob),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(AppendError::ClaimTaken {
                kind: Claim::WECHAT_ACCOUNT
            })
        ),
        "{result:?}"
    );
    assert!(load(&db, &bob.stream()).await.is_empty());
    assert_eq!(
        db.store.find_claim(&unionid).await.unwrap(),
        None,
        "the free claim was not written"
    );
    assert_eq!(db.store.find_claim(&claim).await.unwrap(), Some(alice));
    assert_eq!(
        db.store.find_claim(&account("o-nobody")).await.unwrap(),
        None
    );
    assert_eq!(visible_log(&*db.store, before.len()).await, before);
}

async fn reclaiming_your_own_claim_is_fine(db: Db) {
    let alice = new_user();
    let claim = account("o-alice");
    let register = one(
        &alice.stream(),
        ExpectedVersion::NoStream,
        vec![event("UserRegistered", json!({}))],
    );
    db.store
        .append(register.claim(claim.clone(), alice))
        .await
        .unwrap();
    let relink = one(
        &alice.stream(),
        ExpectedVersion::Exactly(1),
        vec![event("WeChatAccountLinked", json!({}))],
    );
    let recorded = db
        .store
        .append(
            relink
                .claim(claim.clone(), alice)
                .claim(claim.clone(), alice),
        )
        .await
        .unwrap();
    assert_eq!(recorded[0].stream_version, 2);
    assert_eq!(db.store.find_claim(&claim).await.unwrap(), Some(alice));
}

async fn read_all_pages_through_the_log(db: Db) {
    let mut written = Vec::new();
    for (i, count) in [3, 1, 2, 1].into_iter().enumerate() {
        let events = (0..count).map(|_| event("E", json!(i))).collect();
        written.extend(
            append_one(
                &db,
                &stream(&format!("s-{i}")),
                ExpectedVersion::NoStream,
                events,
            )
            .await
            .unwrap(),
        );
    }
    visible_log(&*db.store, written.len()).await;
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = db.store.read_all(after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.position;
        read.extend(page);
    }
    assert_eq!(read, written);
    assert_eq!(
        db.store.read_all(written[2].position, 2).await.unwrap(),
        written[3..5]
    );
    assert!(db.store.read_all(after, 10).await.unwrap().is_empty());
}

const APP: &str = "wx0123456789abcdef";

/// The sealed session key the vault holds for `openid` on `appid`, reading the vault address
/// of `openid` on [`APP`] (so another `appid` asks for a key filed under the wrong app).
async fn stored_key(db: &Db, appid: &str, openid: &str) -> Option<Vec<u8>> {
    db.store
        .session_key(appid, &vault_address(APP, openid))
        .await
        .unwrap()
}

async fn put_key(db: &Db, openid: &str, sealed: &[u8]) {
    db.store
        .put_session_key(APP, &vault_address(APP, openid), sealed)
        .await
        .unwrap();
}

async fn a_session_key_commits_with_its_append(db: Db) {
    let login = stream("session-key-login");
    let batch = |expected, event_type, sealed: &[u8]| {
        one(&login, expected, vec![event(event_type, json!({}))]).session_key(
            APP,
            &vault_address(APP, "o-1"),
            sealed.to_vec(),
        )
    };
    db.store
        .append(batch(ExpectedVersion::NoStream, "UserLoggedIn", b"first"))
        .await
        .unwrap();
    assert_eq!(
        stored_key(&db, APP, "o-1").await.as_deref(),
        Some(&b"first"[..])
    );

    // A refused append writes nothing, its session key included.
    assert_conflict_on(
        db.store
            .append(batch(ExpectedVersion::NoStream, "UserLoggedIn", b"second"))
            .await,
        &login,
    );
    assert_eq!(
        stored_key(&db, APP, "o-1").await.as_deref(),
        Some(&b"first"[..])
    );

    // An accepted one replaces the key.
    db.store
        .append(batch(
            ExpectedVersion::Exactly(1),
            "SessionRefreshed",
            b"third",
        ))
        .await
        .unwrap();
    assert_eq!(
        stored_key(&db, APP, "o-1").await.as_deref(),
        Some(&b"third"[..])
    );
}

async fn session_keys_are_replaced(db: Db) {
    assert_eq!(stored_key(&db, APP, "o-1").await, None);
    put_key(&db, "o-1", b"sealed-1").await;
    put_key(&db, "o-2", b"other").await;
    assert_eq!(
        stored_key(&db, APP, "o-1").await.as_deref(),
        Some(&b"sealed-1"[..])
    );
    put_key(&db, "o-1", &[0, 255, 1]).await;
    assert_eq!(stored_key(&db, APP, "o-1").await, Some(vec![0, 255, 1]));
    assert_eq!(
        stored_key(&db, APP, "o-2").await.as_deref(),
        Some(&b"other"[..])
    );
    assert_eq!(stored_key(&db, "wxffffffffffffffff", "o-1").await, None);
}

/// Writers do not checkpoint on SQLite (so no append waits behind one); the store's
/// checkpointer does, beside them. Without it the database file would not grow while the
/// store is open: everything written would stay in the WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_checkpoints_the_wal_beside_the_writer() {
    let (store, url) = testkit::fresh_store(testkit::Backend::Sqlite)
        .await
        .unwrap();
    let path = url.trim_start_matches("sqlite://").to_owned();
    let size = || std::fs::metadata(&path).map_or(0, |m| m.len());
    let before = size();
    for i in 0..50 {
        let events = (0..20)
            .map(|_| event("E", json!({ "padding": "x".repeat(2000) })))
            .collect();
        store
            .append(one(
                &stream(&format!("wal-{i}")),
                ExpectedVersion::NoStream,
                events,
            ))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while size() < before + 1_000_000 {
        assert!(
            Instant::now() < deadline,
            "the database file stayed at {} bytes (from {before}): no checkpoint ran",
            size()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
