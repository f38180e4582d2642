//! PostgreSQL only, on a private cluster that the test stops (so it needs no turn of
//! `ONE_AT_A_TIME`): appends that queued behind a call which could open no connection fail
//! with that call, so a request learns that the database is away within one acquire timeout,
//! not two or more; and a write after a restart does not fail on a connection pooled before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infra::database_url::DatabaseUrl;
use infra::sql::PoolSettings;
use infra::store::{
    is_connection_lost, is_database_failure, is_database_unavailable, AppendError, EventStore,
    ExpectedVersion, PostgresStore, RecordedEvent,
};
use testkit::PgCluster;
use tokio::task::JoinHandle;

use super::{events, one, stream};

/// Long enough that "failed with the call" and "waited for a call of its own" are seconds
/// apart, whatever the machine's load.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Appends that queue behind the call in flight.
const QUEUED: usize = 6;

type Appending = JoinHandle<Result<Vec<RecordedEvent>, AppendError>>;

/// Waits (up to the acquire timeout) until `done` says so; fails naming `what` otherwise.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let waiting = Instant::now();
    while !done() {
        assert!(waiting.elapsed() < ACQUIRE_TIMEOUT, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn append(store: &Arc<PostgresStore>, name: &str) -> Appending {
    let (store, batch) = (
        store.clone(),
        one(&stream(name), ExpectedVersion::NoStream, events(1)),
    );
    tokio::spawn(async move { store.append(batch).await })
}

#[tokio::test]
async fn appends_queued_behind_a_call_without_a_connection_fail_with_it() {
    let Some(cluster) = PgCluster::start().await else {
        return;
    };
    let settings = PoolSettings {
        acquire_timeout: ACQUIRE_TIMEOUT,
        startup_wait: Duration::from_secs(10),
    };
    let url = DatabaseUrl::parse(&cluster.url()).unwrap();
    let store = Arc::new(PostgresStore::connect_with(&url, &settings).await.unwrap());
    append(&store, "before").await.unwrap().unwrap();

    cluster.stop().await;
    // The pooled connections died with the server: the first append (one statement, no
    // `BEGIN`) meets one and fails as a lost connection; the pool then pings what it hands
    // out, so a later call drops the dead ones, finds no new one, and fails only after
    // waiting the whole acquire timeout.
    for tries in 1.. {
        let failed = append(&store, &format!("draining-{tries}"))
            .await
            .unwrap()
            .unwrap_err();
        assert!(is_database_unavailable(&failed), "{failed}");
        if !is_connection_lost(&failed) {
            break;
        }
        assert!(tries < 32, "the pool keeps handing out dead connections");
    }

    let in_flight = append(&store, "in-flight");
    // Once the writer has taken it, the next appends queue behind its call. Were it not taken
    // yet, all would share one call and pass without the rule: the test could only miss.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued: Vec<Appending> = (0..QUEUED)
        .map(|i| append(&store, &format!("queued-{i}")))
        .collect();
    wait_until("the appends queue", || store.queued_appends() >= QUEUED).await;

    let failed = in_flight.await.unwrap().unwrap_err();
    assert!(is_database_unavailable(&failed), "{failed}");
    for append in queued {
        // Without the rule each would wait a call of its own: the acquire timeout again.
        let failed = tokio::time::timeout(ACQUIRE_TIMEOUT / 3, append)
            .await
            .expect("a queued append waited for a call of its own")
            .unwrap()
            .unwrap_err();
        // Unavailable, and a wait for the pool: not taken for a failure of the database.
        assert!(is_database_unavailable(&failed), "{failed}");
        assert!(!is_database_failure(&failed), "{failed}");
    }

    cluster.start_again().await;
    let healed = Instant::now();
    for tries in 1.. {
        match append(&store, &format!("after-{tries}")).await.unwrap() {
            Ok(_) => break,
            Err(e) => {
                assert!(is_database_unavailable(&e), "{e}");
                assert!(
                    healed.elapsed() < Duration::from_secs(10),
                    "appends still fail: {e}"
                );
            }
        }
    }
    // Nothing that failed was written: each of those streams is still new.
    for i in 0..QUEUED {
        append(&store, &format!("queued-{i}"))
            .await
            .unwrap()
            .expect("a failed append left its stream written");
    }
}

/// A write after a server restart does not fail on the connections pooled before it
/// (`infra::sql::begin`).
#[tokio::test]
async fn a_transaction_begun_after_a_restart_does_not_fail_on_a_dead_pooled_connection() {
    let Some(cluster) = PgCluster::start().await else {
        return;
    };
    const POOLED: usize = 4;
    // No test of idle connections on checkout (the service tests those idle for 5 s), so the
    // dead ones are handed out however long the restart takes.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .test_before_acquire(false)
        .max_connections(POOLED as u32)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(&cluster.url())
        .await
        .unwrap();
    // Every connection the pool may hold, open and idle.
    let held: Vec<_> = futures::future::join_all((0..POOLED).map(|_| pool.acquire())).await;
    drop(held);
    wait_until("the connections go back", || pool.num_idle() >= POOLED).await;

    cluster.restart().await;
    for write in 0..POOLED {
        let mut tx = infra::sql::begin(&pool)
            .await
            .unwrap_or_else(|e| panic!("write {write} after the restart: {e}"));
        sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
}
