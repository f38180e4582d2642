//! A transaction cut short while it begins: the pooled connection it used must come back to
//! the pool outside any transaction (see `infra::sql::begin`).

use futures::FutureExt;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_cancelled_begin_leaves_no_transaction_open() {
    let Some(url) = testkit::fresh_postgres_url().await else {
        return;
    };
    // One connection, handed out without a check first: the first poll of a begin sends
    // `BEGIN` at once and then waits for its answer.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .unwrap();
    let mut observer = PgConnection::connect(&url).await.unwrap();
    let mut cut_short = 0;
    for attempt in 0..20 {
        // Polled once, then dropped: `BEGIN` is on the wire, its answer unread. (Unless this
        // thread was preempted for a whole round trip on a busy machine: then the begun
        // transaction is dropped here, which must leave the connection idle too.)
        if infra::sql::begin(&pool).now_or_never().is_none() {
            cut_short += 1;
        }
        // Once back in the pool, the connection is idle, not idle in a transaction.
        let mut conn = pool.acquire().await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let state: String = sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(&mut observer)
            .await
            .unwrap();
        assert_eq!(state, "idle", "attempt {attempt}");
    }
    assert!(
        cut_short > 0,
        "no begin was cut short: the test tested nothing"
    );
}
