//! PostgreSQL only, on a private cluster that the test stops: appends that queued behind a
//! call which found no connection fail with that call, so a request learns that the
//! database is away within one acquire timeout, not two or more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infra::database_url::DatabaseUrl;
use infra::sql::PoolSettings;
use infra::store::{
    is_connection_lost, is_database_unavailable, AppendError, EventStore, ExpectedVersion,
    PostgresStore, RecordedEvent,
};
use testkit::PgCluster;
use tokio::task::JoinHandle;

use super::{events, one, stream};

/// Long enough that "failed with the call" and "waited for a call of its own" are seconds
/// apart, whatever the machine's load.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Appends that queue behind the call in flight.
const QUEUED: usize = 6;

type Timed = JoinHandle<(Result<Vec<RecordedEvent>, AppendError>, Instant)>;

fn append(store: &Arc<PostgresStore>, name: &str) -> Timed {
    let (store, batch) = (
        store.clone(),
        one(&stream(name), ExpectedVersion::NoStream, events(1)),
    );
    tokio::spawn(async move { (store.append(batch).await, Instant::now()) })
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
    append(&store, "before").await.unwrap().0.unwrap();

    cluster.stop().await;
    // The pooled connections died with the server: an append fails at once on each, until
    // the pool has none left and a call waits the whole acquire timeout for a new one.
    for tries in 1.. {
        let (failed, _) = append(&store, &format!("draining-{tries}")).await.unwrap();
        let failed = failed.unwrap_err();
        assert!(is_database_unavailable(&failed), "{failed}");
        if !is_connection_lost(&failed) {
            break;
        }
        assert!(tries < 32, "the pool keeps handing out dead connections");
    }

    let in_flight = append(&store, "in-flight");
    // Once the writer has taken it, the next appends queue behind its call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued: Vec<Timed> = (0..QUEUED)
        .map(|i| append(&store, &format!("queued-{i}")))
        .collect();
    let waiting = Instant::now();
    while store.queued_appends() < QUEUED {
        assert!(
            waiting.elapsed() < ACQUIRE_TIMEOUT,
            "the appends did not queue"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (failed, call_ended) = in_flight.await.unwrap();
    let failed = failed.unwrap_err();
    assert!(is_database_unavailable(&failed), "{failed}");
    for append in queued {
        let (failed, ended) = append.await.unwrap();
        let failed = failed.unwrap_err();
        assert!(is_database_unavailable(&failed), "{failed}");
        // Without the rule each would wait a call of its own: the acquire timeout again.
        let after = ended.saturating_duration_since(call_ended);
        assert!(
            after < ACQUIRE_TIMEOUT / 3,
            "a queued append failed {after:?} after the call it queued behind"
        );
    }

    cluster.start_again().await;
    let healed = Instant::now();
    for tries in 1.. {
        match append(&store, &format!("after-{tries}")).await.unwrap().0 {
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
}
