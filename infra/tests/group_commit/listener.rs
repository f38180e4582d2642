//! PostgreSQL only: the NOTIFY listener's connection is killed again and again while this
//! instance appends. No append may fail for it (a listener's connection back in the store's
//! pool, still subscribed, failed the next append on it with "unexpected message:
//! NotificationResponse"), and the listener keeps coming back: another instance's append
//! still wakes this one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infra::database_url::DatabaseUrl;
use infra::store::{EventStore, ExpectedVersion, PostgresStore, Store};
use sqlx::{Connection, PgConnection};
use testkit::Backend;
use uuid::Uuid;

use super::{events, one, stream};

/// How long the appends and the killing go on.
const FOR: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_listener_killed_under_appends_fails_no_append_and_comes_back() {
    let Some(url) = testkit::fresh_url(Backend::Postgres).await else {
        return;
    };
    let _one_at_a_time = super::ONE_AT_A_TIME.lock().await;
    // The instance under test names its connections, so that only its listener is killed.
    let name = format!("listener-{}", Uuid::now_v7().simple());
    let separator = if url.contains('?') { '&' } else { '?' };
    let named = DatabaseUrl::parse(&format!("{url}{separator}application_name={name}")).unwrap();
    let store = Arc::new(PostgresStore::connect(&named).await.unwrap());
    let other = PostgresStore::connect(&DatabaseUrl::parse(&url).unwrap())
        .await
        .unwrap();
    let mut killer = PgConnection::connect(&url).await.unwrap();

    let until = Instant::now() + FOR;
    let appenders: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut appended = 0;
                while Instant::now() < until {
                    let stream = stream(&format!("listener-{}", Uuid::now_v7()));
                    let batch = one(&stream, ExpectedVersion::NoStream, events(1));
                    if let Err(e) = store.append(batch).await {
                        panic!("append {appended} failed while the listener was killed: {e}");
                    }
                    appended += 1;
                }
                appended
            })
        })
        .collect();
    let mut kills = 0;
    while Instant::now() < until {
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND query LIKE 'LISTEN%' \
             AND pg_terminate_backend(pid)",
        )
        .bind(&name)
        .fetch_one(&mut killer)
        .await
        .unwrap();
        kills += killed;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut appended = 0;
    for appender in appenders {
        appended += appender.await.unwrap();
    }
    assert!(kills >= 3, "the listener was killed {kills} times only");

    // Still listening: another instance's appends wake this one. The listener retries a
    // second after a failure, and announcements sent meanwhile are lost: the other instance
    // appends every 200 ms until one arrives.
    let mut wakeups = store.appended();
    let woken = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let stream = stream(&format!("listener-other-{}", Uuid::now_v7()));
            let theirs = other
                .append(one(&stream, ExpectedVersion::NoStream, events(1)))
                .await
                .unwrap();
            let position = theirs.last().unwrap().position;
            let arrived = tokio::time::timeout(Duration::from_millis(200), async {
                while *wakeups.borrow_and_update() < position {
                    wakeups.changed().await.unwrap();
                }
            })
            .await;
            if arrived.is_ok() {
                break;
            }
        }
    })
    .await;
    assert!(
        woken.is_ok(),
        "another instance's appends did not wake this one"
    );
    eprintln!("{appended} appends, none failed, while the listener was killed {kills} times");
}
