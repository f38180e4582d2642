//! What the store and the read models need from sqlx beyond its API as it stands.

use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database, Pool, Transaction};

/// Opens a transaction on `pool`, like `pool.begin()`, in a way a cancelled caller cannot cut
/// short.
///
/// Why: sqlx (0.8.6 and 0.9.0, transact-rs/sqlx#4393) counts a PostgreSQL transaction only
/// once `BEGIN`'s answer arrives. A future dropped while it waits (a shutdown's `select!`, an
/// aborted task, a client gone away) leaves the server inside a transaction that nothing ends,
/// and the pool hands that connection on: the next borrower's appends run inside it,
/// answered as written yet never committed, and every event reader waits behind its
/// transaction id. In its own task `BEGIN` always completes; a transaction nobody takes is
/// then dropped, and sqlx rolls it back before the connection goes back to the pool.
pub async fn begin<DB: Database>(pool: &Pool<DB>) -> Result<Transaction<'static, DB>, sqlx::Error> {
    begin_in_task(pool, None).await
}

/// `begin` with a statement of one's own (SQLite's `BEGIN IMMEDIATE`), which sqlx checks in a
/// second step after it ran: the same window, on SQLite too.
pub async fn begin_with<DB: Database>(
    pool: &Pool<DB>,
    statement: &'static str,
) -> Result<Transaction<'static, DB>, sqlx::Error> {
    begin_in_task(pool, Some(statement)).await
}

#[allow(clippy::disallowed_methods)] // the one place that may call them
async fn begin_in_task<DB: Database>(
    pool: &Pool<DB>,
    statement: Option<&'static str>,
) -> Result<Transaction<'static, DB>, sqlx::Error> {
    let pool = pool.clone();
    let task = tokio::spawn(async move {
        match statement {
            Some(statement) => pool.begin_with(statement).await,
            None => pool.begin().await,
        }
    });
    match task.await {
        Ok(begun) => begun,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down.
        Err(e) => Err(sqlx::Error::Io(std::io::Error::other(e))),
    }
}

/// How long a pooled connection may sit idle before it is pinged on checkout.
const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Pool options that test a connection on checkout only after it sat idle a while.
///
/// Why: sqlx pings every connection it hands out (`test_before_acquire`) and again whenever
/// one goes back, so each checkout cost three round trips instead of one; at peak that was 12
/// of a login's 20 round trips to PostgreSQL. Under load a connection is back in use within
/// milliseconds and the ping on its return already tested it; one that sat idle (a database
/// restart meanwhile) is still tested before use.
pub fn tested_after_idle<DB: Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    options
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}
