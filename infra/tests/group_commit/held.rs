//! PostgreSQL only: a group held in flight with a lock taken from another connection, so what
//! queues behind it is known without timing anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infra::database_url::DatabaseUrl;
use infra::store::{
    AppendBatch, AppendError, DataKeyStore, EventStore, ExpectedVersion, PostgresStore,
    RecordedEvent, StoreError,
};
use sqlx::{Connection, PgConnection};
use testkit::Backend;
use tokio::task::JoinHandle;

use super::{account, events, log_is_exactly, new_user, one, stream};
use domain::StreamId;

/// A PostgreSQL store of its own on a fresh schema, and its URL; `None` when the PostgreSQL
/// tests are skipped.
async fn postgres() -> Option<(Arc<PostgresStore>, String)> {
    let url = testkit::fresh_url(Backend::Postgres).await?;
    let store = PostgresStore::connect(&DatabaseUrl::parse(&url).unwrap())
        .await
        .unwrap();
    Some((Arc::new(store), url))
}

/// A lock held by another connection's open transaction (a stream's row, or the position
/// reservation's): a call that needs it waits, and with it the group it is in.
struct RowLock {
    conn: PgConnection,
    pid: i32,
    /// Watches from outside the transaction (its statistics are fresh at each statement).
    watcher: PgConnection,
}

impl RowLock {
    async fn hold(url: &str, stream: &StreamId) -> Self {
        let lock = sqlx::query("SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE")
            .bind(stream.as_str());
        Self::taking(url, lock).await
    }

    /// The position reservation's advisory lock instead: every call waits for it before its
    /// `lock_timeout` is set, so a call stays in flight for as long as a test needs (a row
    /// lock would refuse its batch after 200 ms, racing the test on a busy machine).
    async fn reservation(url: &str) -> Self {
        let lock = sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(RESERVATION);
        Self::taking(url, lock).await
    }

    async fn taking(
        url: &str,
        lock: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Self {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        lock.execute(&mut conn).await.unwrap();
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
    let _one_at_a_time = super::ONE_AT_A_TIME.lock().await;
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

    let mut lock = RowLock::reservation(&url).await;
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

/// A group whose appends touch distinct streams and release no claims is written set-based
/// (migration 0020's fast path): each append still gets its own events, versions and
/// positions in queue order. One refused append in such a group undoes the fast path, and
/// the per-batch path refuses it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_of_distinct_streams_answers_each_append_as_one_by_one() {
    let _one_at_a_time = super::ONE_AT_A_TIME.lock().await;
    let Some((store, url)) = postgres().await else {
        return;
    };
    let (blocker, existing) = (stream("d-blocker"), stream("d-existing"));
    let mut all = vec![
        store
            .append(one(&blocker, ExpectedVersion::NoStream, events(1)))
            .await
            .unwrap(),
        store
            .append(one(&existing, ExpectedVersion::NoStream, events(1)))
            .await
            .unwrap(),
    ];
    let holder = new_user();
    let held = one(&stream("d-holder"), ExpectedVersion::NoStream, events(1))
        .claim(account("d-held"), holder);
    all.push(store.append(held).await.unwrap());
    let (keyed, claimant) = (new_user(), new_user());

    // A group that commits whole, one refused for a held claim, one for a moved stream.
    for tag in ["all", "claim", "moved"] {
        let mut lock = RowLock::reservation(&url).await;
        let in_flight =
            store
                .clone()
                .append_spawned(one(&blocker, ExpectedVersion::Any, events(1)));
        lock.waiter(None).await;
        let (s1, s2, s3) = (
            stream(&format!("d-{tag}1")),
            stream(&format!("d-{tag}2")),
            stream(&format!("d-{tag}3")),
        );
        let middle = match tag {
            "all" => {
                one(&s2, ExpectedVersion::NoStream, events(1)).data_key(keyed, b"key".to_vec())
            }
            "claim" => {
                one(&s2, ExpectedVersion::NoStream, events(1)).claim(account("d-held"), new_user())
            }
            _ => one(&existing, ExpectedVersion::Exactly(5), events(1)),
        };
        let mut batches = vec![
            one(&s1, ExpectedVersion::NoStream, events(2))
                .claim(account(&format!("d-fresh-{tag}")), claimant),
            middle,
            one(&s3, ExpectedVersion::Any, events(2)),
        ];
        if tag == "all" {
            batches.push(one(&existing, ExpectedVersion::Exactly(1), events(1)));
        }
        let group = queue(&store, batches).await;
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
        match tag {
            "all" => {
                assert_eq!(versions(1), [1]);
                assert_eq!(versions(3), [2]);
                let key = store.data_key(keyed).await.unwrap();
                assert_eq!(key.as_deref(), Some(&b"key"[..]));
                // Written set-based: one subtransaction, so one transaction id on every row
                // (the per-batch path gives each batch its own).
                let mut conn = PgConnection::connect(&url).await.unwrap();
                let writers: i64 = sqlx::query_scalar(
                    "SELECT count(DISTINCT xmin::text) FROM events \
                     WHERE stream_id = ANY($1) AND position > $2",
                )
                .bind([&s1, &s2, &s3, &existing].map(|s| s.as_str().to_owned()))
                .bind(first[0].position)
                .fetch_one(&mut conn)
                .await
                .unwrap();
                assert_eq!(writers, 1, "the group was not written set-based");
            }
            "claim" => {
                let taken = account("d-held").kind;
                assert!(
                    matches!(&outcomes[1], Err(AppendError::ClaimTaken { kind }) if *kind == taken),
                    "{:?}",
                    outcomes[1]
                );
                assert!(store.load_stream(&s2).await.unwrap().is_empty());
            }
            _ => assert!(
                matches!(&outcomes[1], Err(AppendError::VersionConflict(s)) if *s == existing),
                "{:?}",
                outcomes[1]
            ),
        }
        assert_eq!(versions(2), [1, 2]);

        let committed: Vec<Vec<RecordedEvent>> =
            outcomes.into_iter().filter_map(Result::ok).collect();
        let positions: Vec<i64> = committed.iter().flatten().map(|e| e.position).collect();
        let after_first = first[0].position + 1;
        assert_eq!(
            positions,
            (after_first..after_first + positions.len() as i64).collect::<Vec<_>>(),
            "in queue order, no hole"
        );
        all.push(first);
        all.extend(committed);
    }
    log_is_exactly(store.as_ref(), &all).await;
}

/// A call whose connection dies fails every append in it, those that did nothing wrong too,
/// and none of them is written; the writer goes on with the next group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_whose_connection_dies_fails_every_append_in_it() {
    let _one_at_a_time = super::ONE_AT_A_TIME.lock().await;
    let Some((store, url)) = postgres().await else {
        return;
    };
    let blocker = stream("blocker");
    store
        .append(one(&blocker, ExpectedVersion::NoStream, events(1)))
        .await
        .unwrap();
    let mut lock = RowLock::reservation(&url).await;
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

/// The position reservation's advisory lock (migration 0001), held from another connection:
/// a call waits for it before its `lock_timeout` is set, however long it is held, so a group
/// can be queued behind it.
const RESERVATION: i64 = 7594306396727374969;

/// A row locked from outside makes its batch wait about `lock_timeout` (migration 0017) at
/// most twice (the set-based try of 0020, then the batch's own), then that batch alone is refused as a conflict and the rest of its group commits; the
/// lock is never released first (before, the whole group waited for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_waiting_on_an_outside_row_lock_is_refused_alone() {
    let _one_at_a_time = super::ONE_AT_A_TIME.lock().await;
    let Some((store, url)) = postgres().await else {
        return;
    };
    let locked = stream("locked");
    store
        .append(one(&locked, ExpectedVersion::NoStream, events(1)))
        .await
        .unwrap();
    let lock = RowLock::hold(&url, &locked).await;
    let mut reservation = PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(RESERVATION)
        .execute(&mut reservation)
        .await
        .unwrap();
    let reserving: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut reservation)
        .await
        .unwrap();
    let in_flight =
        store
            .clone()
            .append_spawned(one(&stream("first"), ExpectedVersion::NoStream, events(1)));
    blocked_by(&url, reserving).await;
    let unrelated = stream("unrelated");
    let group = queue(
        &store,
        vec![
            one(&locked, ExpectedVersion::Exactly(1), events(1)),
            one(&unrelated, ExpectedVersion::NoStream, events(1)),
        ],
    )
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(RESERVATION)
        .execute(&mut reservation)
        .await
        .unwrap();

    // Only a guard against a hang; the assertions are the answers below.
    let guard = Duration::from_secs(30);
    tokio::time::timeout(guard, in_flight)
        .await
        .expect("the first call hangs")
        .unwrap()
        .unwrap();
    let mut outcomes = Vec::new();
    for handle in group {
        let outcome = tokio::time::timeout(guard, handle).await;
        outcomes.push(outcome.expect("a batch waits for the row lock").unwrap());
    }
    assert!(
        matches!(&outcomes[0], Err(AppendError::VersionConflict(s)) if *s == locked),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(outcomes[1].as_ref().unwrap()[0].stream_version, 1);
    assert_eq!(store.load_stream(&unrelated).await.unwrap().len(), 1);
    lock.release().await;
    assert_eq!(store.load_stream(&locked).await.unwrap().len(), 1);
}

/// Waits until some backend waits for a lock `holder` holds.
async fn blocked_by(url: &str, holder: i32) {
    let mut watcher = PgConnection::connect(url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)))",
        )
        .bind(holder)
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no call waits for the reservation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
