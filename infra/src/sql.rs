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

/// The options every pool of ours starts from: a connection is tested on checkout only after
/// it sat idle a while, and one that comes back still inside a transaction is closed, never
/// handed out again.
///
/// Why test only after idle: sqlx pings every connection it hands out (`test_before_acquire`)
/// and again whenever one goes back, so each checkout cost three round trips instead of one;
/// at peak that was 12 of a login's 20 round trips to PostgreSQL. Under load a connection is
/// back in use within milliseconds and the ping on its return already tested it; one that sat
/// idle (a database restart meanwhile) is still tested before use.
///
/// Why close a connection still in a transaction: when SQLite fails a `COMMIT` (a full disk:
/// `SQLITE_FULL`, an I/O error) it may roll the transaction back by itself; sqlx then still
/// counts it open, its `ROLLBACK` on drop fails ("no transaction is active"), and the count
/// stays at one for good. Pooled again, that connection refused every later `BEGIN IMMEDIATE`
/// ("attempted to call begin_with at non-zero transaction depth") and, with a plain `BEGIN`,
/// opened a savepoint instead; had the transaction survived with its rollback failing too, it
/// would have kept the database's write lock. Every write answered 500 until a restart, even
/// once the disk had room again. A fresh connection has none of that state.
pub fn checked_pool<DB: Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
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
        .after_release(|conn, _| Box::pin(ended_its_transactions::<DB>(conn)))
}

/// Whether a connection coming back to its pool is outside any transaction (else it is
/// closed: see [`checked_pool`]). Costs nothing for a connection whose transactions all ended
/// (the common case): only one that looks inside a transaction is asked to catch up first.
async fn ended_its_transactions<DB: Database>(
    conn: &mut DB::Connection,
) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A transaction dropped unfinished queues its rollback without waiting for it (sqlx's
    // `start_rollback`; SQLite's worker runs it in turn): a round trip lets it land.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!(
            "a pooled connection stayed inside a transaction that failed to end: replaced"
        );
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    /// The state a failed `COMMIT` leaves when SQLite already rolled back (a full disk): sqlx
    /// counts a transaction that no longer exists, and its `ROLLBACK` fails. Here the
    /// transaction is ended behind sqlx's back, to the same effect.
    #[tokio::test]
    async fn a_connection_left_in_a_false_transaction_is_replaced() {
        let dir = std::env::temp_dir().join(format!("checked-pool-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("db").display());
        let pool = checked_pool(SqlitePoolOptions::new())
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();

        let mut tx = begin_with(&pool, "BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("COMMIT").execute(&mut *tx).await.unwrap();
        drop(tx);

        // Without the check: "attempted to call begin_with at non-zero transaction depth".
        let mut tx = begin_with(&pool, "BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let conn = pool.acquire().await.unwrap();
        assert!(!conn.is_in_transaction());
        drop(conn);
        pool.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}
