//! Reads' connections kept between uses, without sqlx's ping on their return.
//!
//! sqlx pings every connection that goes back to its pool, whatever happened to it: the ping
//! flushes a rollback that a dropped transaction queued, and finds a connection that a
//! statement cut short (its future dropped) left broken. After a read that ran to its end
//! there is neither to flush nor to find, and the ping is only a cost: a round trip to
//! PostgreSQL, a hand-off to the connection's worker thread on SQLite, and the connection out
//! of reach meanwhile. A read's login and `/v1/me` each paid one (BENCHMARKS.md, "PostgreSQL
//! cost per login": 2.4 of the 5.1 round trips per login).
//!
//! A [`Shelf`] keeps such connections checked out of a pool of its own and lends them again.
//! A connection whose use did not end well (the statement failed or was cut short, or it sits
//! inside a transaction) goes back to the pool the usual way, ping and all. Callers queue for
//! one of the pool's connections on the shelf's own semaphore, in order: a connection kept is
//! the next caller's at once, and one the pool has to make or take back never waits for one
//! kept here (the pool is the shelf's alone, and no more are lent or kept than it holds).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Pool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Liveness, PING_AFTER_IDLE};

/// Connections of a pool lent without a ping on their return (see the module's doc).
pub struct Shelf<DB: Database> {
    pool: Pool<DB>,
    liveness: Liveness,
    /// One permit per connection the pool may hold: a caller lent one holds a permit.
    turns: Arc<Semaphore>,
    idle: Kept<DB>,
}

/// Connections back from a finished use, and since when (the last in is the first out).
type Kept<DB> = Arc<Mutex<Vec<(PoolConnection<DB>, Instant)>>>;

impl<DB: Database> Clone for Shelf<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            liveness: self.liveness.clone(),
            turns: self.turns.clone(),
            idle: self.idle.clone(),
        }
    }
}

impl<DB: Database> Shelf<DB> {
    /// Keeps the connections of `pool`, which nobody else may acquire from (a caller waiting in
    /// it could wait for a connection kept here). `liveness` says when to test one lent again:
    /// after it sat idle, and while the database is suspect, as the pool would.
    pub fn new(pool: Pool<DB>, liveness: Liveness) -> Self {
        let connections = pool.options().get_max_connections() as usize;
        Self {
            pool,
            liveness,
            turns: Arc::new(Semaphore::new(connections)),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The pool under the shelf, for uses that return their connection the usual way while
    /// nothing is lent (tests).
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// A connection: the one kept most recently, else one from the pool; within the pool's
    /// acquire timeout, waiting in turn. Tested first as the pool would test it (see
    /// [`Shelf::new`]).
    pub async fn acquire(&self) -> Result<Lent<DB>, sqlx::Error> {
        let timeout = self.pool.options().get_acquire_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let turn = tokio::time::timeout_at(deadline, self.turns.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let kept = lock(&self.idle).pop();
            let Some((mut conn, since)) = kept else {
                // Fewer are lent and kept than the pool holds: it has one, or room for one.
                let conn = tokio::time::timeout_at(deadline, self.pool.acquire())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)??;
                return Ok(Lent {
                    conn,
                    turn,
                    idle: self.idle.clone(),
                });
            };
            if self.liveness.suspect() || since.elapsed() > PING_AFTER_IDLE {
                let pinged = tokio::time::timeout_at(deadline, conn.ping()).await;
                if !matches!(pinged, Ok(Ok(()))) {
                    // Dead (a server restart): closed, not pooled; try the next.
                    conn.close_on_drop();
                    continue;
                }
            }
            return Ok(Lent {
                conn,
                turn,
                idle: self.idle.clone(),
            });
        }
    }
}

/// A connection lent by a [`Shelf`]. Dropped, it goes back to the pool (with sqlx's ping); see
/// [`Lent::finished`].
pub struct Lent<DB: Database> {
    conn: PoolConnection<DB>,
    /// Declared after `conn`: dropped unfinished, the connection is on its way back to the
    /// pool before the next caller's turn.
    turn: OwnedSemaphorePermit,
    idle: Kept<DB>,
}

impl<DB: Database> Lent<DB> {
    /// Its use ran to its end (every statement answered, the last one successfully): kept for
    /// the next caller, unless it sits inside a transaction (then to the pool, whose check
    /// closes it: `checked_pool`).
    pub fn finished(self) {
        let Self { conn, turn, idle } = self;
        if !conn.is_in_transaction() {
            lock(&idle).push((conn, Instant::now()));
        }
        drop(turn);
    }
}

impl<DB: Database> Deref for Lent<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for Lent<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

/// The kept connections stay consistent whatever panicked while they were held: each change
/// is a single push or pop.
fn lock<T>(idle: &Mutex<T>) -> MutexGuard<'_, T> {
    idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

    use super::*;

    /// A shelf over a pool of `connections` to a fresh SQLite file, and the file's directory.
    async fn shelf(connections: u32) -> (Shelf<sqlx::Sqlite>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("shelf-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("db").display());
        let pool: SqlitePool = SqlitePoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(60))
            .connect(&url)
            .await
            .unwrap();
        (Shelf::new(pool, Liveness::default()), dir)
    }

    fn idle(shelf: &Shelf<sqlx::Sqlite>) -> usize {
        lock(&shelf.idle).len()
    }

    /// Marks the connection: a temporary table is seen by its own connection only.
    async fn mark(conn: &mut Lent<sqlx::Sqlite>) {
        sqlx::query("CREATE TEMP TABLE marked (x)")
            .execute(&mut **conn)
            .await
            .unwrap();
    }

    async fn is_marked(conn: &mut Lent<sqlx::Sqlite>) -> bool {
        sqlx::query("SELECT 1 FROM temp.sqlite_master WHERE name = 'marked'")
            .fetch_optional(&mut **conn)
            .await
            .unwrap()
            .is_some()
    }

    #[tokio::test]
    async fn a_finished_connection_is_kept_and_lent_again() {
        let (shelf, dir) = shelf(2).await;
        let mut conn = shelf.acquire().await.unwrap();
        mark(&mut conn).await;
        conn.finished();
        assert_eq!(idle(&shelf), 1);
        let mut again = shelf.acquire().await.unwrap();
        assert!(
            is_marked(&mut again).await,
            "the kept connection, not another"
        );
        assert_eq!(idle(&shelf), 0);
        again.finished();
        drop(shelf);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_connection_dropped_unfinished_goes_back_to_the_pool() {
        let (shelf, dir) = shelf(1).await;
        let mut conn = shelf.acquire().await.unwrap();
        mark(&mut conn).await;
        drop(conn);
        assert_eq!(idle(&shelf), 0, "not kept");
        // The pool has it back (its one connection), tested by sqlx's ping.
        let mut again = shelf.acquire().await.unwrap();
        assert!(is_marked(&mut again).await);
        drop(again);
        drop(shelf);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_caller_waiting_gets_the_connection_kept() {
        let (shelf, dir) = shelf(1).await;
        let mut conn = shelf.acquire().await.unwrap();
        mark(&mut conn).await;
        let waiter = tokio::spawn({
            let shelf = shelf.clone();
            async move {
                let mut conn = shelf.acquire().await?;
                let marked = is_marked(&mut conn).await;
                conn.finished();
                Ok::<_, sqlx::Error>(marked)
            }
        });
        // The waiter runs until it waits for its turn (a current-thread runtime).
        tokio::task::yield_now().await;
        conn.finished();
        // Were it kept from the waiter, the waiter would wait the pool's whole acquire timeout
        // (60 s) and then fail.
        let got = tokio::time::timeout(Duration::from_secs(30), waiter).await;
        assert!(
            got.expect("in time").unwrap().unwrap(),
            "the kept connection"
        );
        assert_eq!((idle(&shelf), shelf.turns.available_permits()), (1, 1));
        drop(shelf);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_caller_waits_no_longer_than_the_acquire_timeout() {
        let (shelf, dir) = shelf(1).await;
        let shelf = Shelf::new(
            SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_millis(50))
                .connect_lazy_with(shelf.pool().connect_options().as_ref().clone()),
            Liveness::default(),
        );
        let held = shelf.acquire().await.unwrap();
        let waited = shelf.acquire().await.map(|_| ());
        assert!(
            matches!(waited, Err(sqlx::Error::PoolTimedOut)),
            "{waited:?}"
        );
        held.finished();
        drop(shelf);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
