//! Appends committed together (group commit: SQLite's writer, PostgreSQL's append writer):
//! every append gets its own answer, a refused one takes none of its neighbours with it, and
//! readers see each committed event once, in order.
//!
//! The PostgreSQL-only tests hold a group in flight with a row lock taken from another
//! connection, so what queues behind it is known without timing anything.

// A failed unwrap is a failed test; the helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{AppId, Claim, EventId, Metadata, OpenId, StreamId, UserId};
use infra::crypto::MasterKey;
use infra::database_url::DatabaseUrl;
use infra::personal_data::LookupIndex;
use infra::store::{
    AppendBatch, AppendError, ClaimKey, DataKeyStore, EventStore, ExpectedVersion, NewEvent,
    PostgresStore, RecordedEvent, StoreError,
};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use testkit::{both_backends, Backend, TestDb as Db};
use tokio::sync::Barrier;
use tokio::task::JoinHandle;
use uuid::Uuid;

both_backends!(
    Db:
    concurrent_appends_each_get_their_own_answer,
    appends_that_all_commit_leave_no_gap,
);

fn event(event_type: &str) -> NewEvent {
    NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: event_type.to_owned(),
        schema_version: 1,
        occurred_at: Utc::now(),
        payload: json!({}),
        metadata: Metadata::system(Uuid::now_v7()),
    }
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| event(&format!("E{i}"))).collect()
}

fn stream(name: &str) -> StreamId {
    StreamId::from_stored(name.to_owned())
}

fn new_user() -> UserId {
    UserId::from_uuid(Uuid::now_v7())
}

fn one(stream_id: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch::default().stream(stream_id.clone(), expected, events)
}

static INDEX: LazyLock<LookupIndex> = LazyLock::new(|| LookupIndex::new(&MasterKey::generate()));

fn account(openid: &str) -> ClaimKey {
    INDEX.claim(&Claim::WeChatAccount {
        appid: AppId::parse("wx0123456789abcdef").unwrap(),
        openid: OpenId::parse(openid).unwrap(),
    })
}

/// The whole log once `count` events are visible (on PostgreSQL a commit becomes readable only
/// once every older transaction on the server has ended, other tests' too).
async fn visible_log(store: &dyn EventStore, count: usize) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = store.read_all(0, 10_000).await.unwrap();
        if log.len() >= count {
            return log;
        }
        assert!(Instant::now() < deadline, "{} of {count} events", log.len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every appended event is read back once, in position order, and nothing else is.
async fn log_is_exactly(store: &dyn EventStore, appended: &[Vec<RecordedEvent>]) {
    let mut expected: Vec<RecordedEvent> = appended.iter().flatten().cloned().collect();
    expected.sort_by_key(|e| e.position);
    let log = visible_log(store, expected.len()).await;
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(log, expected);
}

/// Free appends, rivals for one stream and rivals for one claim, all at once: the free ones
/// all commit, one rival of each kind wins and the others are told why.
async fn concurrent_appends_each_get_their_own_answer(db: Db) {
    const FREE: usize = 24;
    const RIVALS: usize = 8;
    let start = Arc::new(Barrier::new(FREE + 2 * RIVALS));
    let spawn = |batch: AppendBatch| {
        let (store, start) = (db.store.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            store.append(batch).await
        })
    };
    let free: Vec<_> = (0..FREE)
        .map(|i| {
            spawn(one(
                &stream(&format!("free-{i}")),
                ExpectedVersion::NoStream,
                events(2),
            ))
        })
        .collect();
    let contested = stream("contested");
    let stream_rivals: Vec<_> = (0..RIVALS)
        .map(|_| spawn(one(&contested, ExpectedVersion::NoStream, events(1))))
        .collect();
    let wanted = account("o-wanted");
    let claim_rivals: Vec<_> = (0..RIVALS)
        .map(|i| {
            let rival = stream(&format!("claimant-{i}"));
            spawn(
                one(&rival, ExpectedVersion::NoStream, events(1)).claim(wanted.clone(), new_user()),
            )
        })
        .collect();

    let mut committed = Vec::new();
    for append in free {
        let written = append.await.unwrap().unwrap();
        assert_eq!(
            written.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
            [1, 2]
        );
        committed.push(written);
    }
    let (mut won, mut lost) = (0, 0);
    for append in stream_rivals {
        match append.await.unwrap() {
            Ok(written) => {
                won += 1;
                committed.push(written);
            }
            Err(AppendError::VersionConflict(s)) if s == contested => lost += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((won, lost), (1, RIVALS - 1));
    let (mut won, mut lost) = (0, 0);
    for append in claim_rivals {
        match append.await.unwrap() {
            Ok(written) => {
                won += 1;
                committed.push(written);
            }
            Err(AppendError::ClaimTaken { kind }) if kind == wanted.kind => lost += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((won, lost), (1, RIVALS - 1));
    log_is_exactly(db.store.as_ref(), &committed).await;
}

/// Concurrent appends that all commit take every position from 1 on: grouping them leaves no
/// hole in the log.
async fn appends_that_all_commit_leave_no_gap(db: Db) {
    const APPENDS: usize = 32;
    let start = Arc::new(Barrier::new(APPENDS));
    let appends: Vec<_> = (0..APPENDS)
        .map(|i| {
            let (store, start) = (db.store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let own = stream(&format!("gapless-{i}"));
                store
                    .append(one(&own, ExpectedVersion::NoStream, events(1 + i % 3)))
                    .await
            })
        })
        .collect();
    let mut committed = Vec::new();
    for append in appends {
        committed.push(append.await.unwrap().unwrap());
    }
    let mut positions: Vec<i64> = committed.iter().flatten().map(|e| e.position).collect();
    positions.sort_unstable();
    let count = positions.len() as i64;
    assert_eq!(positions, (1..=count).collect::<Vec<_>>());
    log_is_exactly(db.store.as_ref(), &committed).await;
}

/// A PostgreSQL store of its own on a fresh schema, and its URL; `None` when the PostgreSQL
/// tests are skipped.
async fn postgres() -> Option<(Arc<PostgresStore>, String)> {
    let url = testkit::fresh_url(Backend::Postgres).await?;
    let store = PostgresStore::connect(&DatabaseUrl::parse(&url).unwrap())
        .await
        .unwrap();
    Some((Arc::new(store), url))
}

/// A stream's row locked by another connection's open transaction: an append to that stream
/// waits, and with it the group it is in.
struct RowLock {
    conn: PgConnection,
    pid: i32,
    /// Watches from outside the transaction (its statistics are fresh at each statement).
    watcher: PgConnection,
}

impl RowLock {
    async fn hold(url: &str, stream: &StreamId) -> Self {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE")
            .bind(stream.as_str())
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let watcher = PgConnection::connect(url).await.unwrap();
        Self { conn, pid, watcher }
    }

    /// The backend waiting for the lock (a call in flight), once there is one other than
    /// `not`.
    async fn waiter(&mut self, not: Option<i32>) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: Vec<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
            )
            .bind(self.pid)
            .fetch_all(&mut self.watcher)
            .await
            .unwrap();
            if let Some(&pid) = waiting.iter().find(|&&pid| Some(pid) != not) {
                return pid;
            }
            assert!(Instant::now() < deadline, "no append waits for the lock");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn terminate(&mut self, pid: i32) {
        let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut self.watcher)
            .await
            .unwrap();
        assert!(done);
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.conn)
            .await
            .unwrap();
    }
}

type Appending = JoinHandle<Result<Vec<RecordedEvent>, AppendError>>;

/// Queues the appends behind the call in flight, in this order.
async fn queue(store: &Arc<PostgresStore>, batches: Vec<AppendBatch>) -> Vec<Appending> {
    let mut handles = Vec::new();
    for batch in batches {
        let queued = store.queued_appends();
        let appender = store.clone();
        handles.push(tokio::spawn(async move { appender.append(batch).await }));
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.queued_appends() == queued {
            assert!(Instant::now() < deadline, "the append did not queue");
            tokio::task::yield_now().await;
        }
    }
    handles
}

/// One group mixing appends that commit with appends refused for a moved stream, a taken
/// claim and a database error: each gets its own answer, later ones in the group see the
/// earlier ones' writes, and those that commit take consecutive positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_refuses_an_append_alone() {
    let Some((store, url)) = postgres().await else {
        return;
    };
    let blocker = stream("blocker");
    let mut all = vec![store
        .append(one(&blocker, ExpectedVersion::NoStream, events(1)))
        .await
        .unwrap()];
    let (holder, keyed) = (new_user(), new_user());
    let held = one(&stream("holder"), ExpectedVersion::NoStream, events(1))
        .claim(account("o-held"), holder);
    all.push(store.append(held).await.unwrap());
    store.insert_data_key(keyed, b"first key").await.unwrap();

    let mut lock = RowLock::hold(&url, &blocker).await;
    let in_flight =
        store
            .clone()
            .append_spawned(one(&blocker, ExpectedVersion::Exactly(1), events(1)));
    lock.waiter(None).await;
    let (s1, s2, s3) = (stream("s1"), stream("s2"), stream("s3"));
    let group = queue(
        &store,
        vec![
            one(&s1, ExpectedVersion::NoStream, events(2)),
            one(&s1, ExpectedVersion::NoStream, events(1)),
            one(&s2, ExpectedVersion::NoStream, events(1)).claim(account("o-fresh"), new_user()),
            one(&s3, ExpectedVersion::NoStream, events(1)).claim(account("o-held"), new_user()),
            one(&s1, ExpectedVersion::Exactly(2), events(1)),
            one(&s3, ExpectedVersion::NoStream, events(1)).data_key(keyed, b"second key".to_vec()),
            one(&stream("app-x"), ExpectedVersion::Any, events(2)),
        ],
    )
    .await;
    lock.release().await;
    let first = in_flight.await.unwrap().unwrap();

    let mut outcomes = Vec::new();
    for handle in group {
        outcomes.push(handle.await.unwrap());
    }
    let versions = |i: usize| -> Vec<i64> {
        let written: &Vec<RecordedEvent> = outcomes[i].as_ref().unwrap();
        written.iter().map(|e| e.stream_version).collect()
    };
    assert_eq!(versions(0), [1, 2]);
    assert!(matches!(&outcomes[1], Err(AppendError::VersionConflict(s)) if *s == s1));
    assert_eq!(versions(2), [1]);
    let taken = account("o-held").kind;
    assert!(matches!(&outcomes[3], Err(AppendError::ClaimTaken { kind }) if *kind == taken));
    assert_eq!(versions(4), [3], "sees the group's earlier append to s1");
    match &outcomes[5] {
        Err(AppendError::Store(StoreError::Database(sqlx::Error::Database(e)))) => {
            assert_eq!(e.code().as_deref(), Some("23505"));
            assert_eq!(e.constraint(), Some("user_data_keys_pkey"));
        }
        other => panic!("a second data key must fail its append: {other:?}"),
    }
    assert_eq!(versions(6), [1, 2]);
    assert_eq!(
        store.data_key(keyed).await.unwrap().as_deref(),
        Some(&b"first key"[..]),
        "never replaced"
    );

    let committed: Vec<Vec<RecordedEvent>> = outcomes.into_iter().filter_map(Result::ok).collect();
    let mut positions: Vec<i64> = committed.iter().flatten().map(|e| e.position).collect();
    positions.sort_unstable();
    let after_first = first[0].position + 1;
    assert_eq!(
        positions,
        (after_first..after_first + positions.len() as i64).collect::<Vec<_>>(),
        "refused appends leave no hole between the committed ones"
    );
    all.push(first);
    all.extend(committed);
    log_is_exactly(store.as_ref(), &all).await;
}

/// A call whose connection dies fails every append in it, those that did nothing wrong too,
/// and none of them is written; the writer goes on with the next group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_whose_connection_dies_fails_every_append_in_it() {
    let Some((store, url)) = postgres().await else {
        return;
    };
    let blocker = stream("blocker");
    store
        .append(one(&blocker, ExpectedVersion::NoStream, events(1)))
        .await
        .unwrap();
    let mut lock = RowLock::hold(&url, &blocker).await;
    let in_flight =
        store
            .clone()
            .append_spawned(one(&blocker, ExpectedVersion::Exactly(1), events(1)));
    let first_call = lock.waiter(None).await;
    let (bystander, other) = (stream("bystander"), stream("other"));
    let group = queue(
        &store,
        vec![
            one(&blocker, ExpectedVersion::Exactly(1), events(1)),
            one(&bystander, ExpectedVersion::NoStream, events(1)),
            one(&other, ExpectedVersion::NoStream, events(2)),
        ],
    )
    .await;
    lock.terminate(first_call).await;
    assert!(matches!(
        in_flight.await.unwrap(),
        Err(AppendError::Store(_))
    ));
    let second_call = lock.waiter(Some(first_call)).await;
    lock.terminate(second_call).await;
    for handle in group {
        let outcome = handle.await.unwrap();
        assert!(matches!(outcome, Err(AppendError::Store(_))), "{outcome:?}");
    }
    lock.release().await;

    for name in [&bystander, &other] {
        assert!(store.load_stream(name).await.unwrap().is_empty());
    }
    let after = store
        .append(one(&bystander, ExpectedVersion::NoStream, events(1)))
        .await
        .unwrap();
    let versions: BTreeMap<_, _> = store
        .load_stream(&blocker)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.stream_version, e.event_type.clone()))
        .collect();
    assert_eq!(versions.len(), 1, "nothing reached the blocked stream");
    assert_eq!(after[0].stream_version, 1);
}

trait SpawnAppend {
    fn append_spawned(self, batch: AppendBatch) -> Appending;
}

impl SpawnAppend for Arc<PostgresStore> {
    fn append_spawned(self, batch: AppendBatch) -> Appending {
        tokio::spawn(async move { self.append(batch).await })
    }
}
