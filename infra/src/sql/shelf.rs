//! Reads' connections kept between uses, without sqlx's ping on their return.
//!
//! sqlx pings every connection that goes back to its pool, whatever happened to it: the ping
//! flushes a rollback that a dropped transaction queued, and finds a connection that a
//! statement cut short (its future dropped) left broken. After a read that ran to its end
//! there is neither to flush nor to find, and the ping is only a cost: a round trip to
//! PostgreSQL, a hand-off to the connection's worker thread on SQLite, and the connection out
//! of reach meanwhile. The login's read and `/v1/me`'s each paid one: 2.4 of the 5.4 round
//! trips per login to PostgreSQL (BENCHMARKS.md, "The budget now").
//!
//! A [`Shelf`] keeps such connections checked out of a pool of its own and lends them again.
//! A connection whose use did not end well (the statement failed or was cut short, or it sits
//! inside a transaction) goes back to the pool the usual way, ping and all. Callers queue for
//! one of the pool's connections on the shelf's own semaphore, in order: a connection kept is
//! the next caller's at once, and one the pool has to make or take back never waits for one
//! kept here (the pool is the shelf's alone, and no more are lent or kept than it holds).
//! Nothing closes the pool (`Pool::close` would wait for the connections kept here).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Pool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Liveness;

/// Connections of a pool lent without a ping on their return (see the module's doc). Cheap to
/// clone; clones share the connections.
pub(crate) struct Shelf<DB: Database> {
    shared: Arc<Shared<DB>>,
}

struct Shared<DB: Database> {
    pool: Pool<DB>,
    liveness: Liveness,
    /// One permit per connection the pool may hold: a caller lent one holds a permit.
    turns: Arc<Semaphore>,
    /// Connections back from a finished use (the last in is the first out).
    idle: Mutex<Vec<Kept<DB>>>,
}

struct Kept<DB: Database> {
    conn: PoolConnection<DB>,
    /// When it came back.
    since: Instant,
    /// When the shelf took it from the pool: its age is counted from there, not from its
    /// connecting (which sqlx does not tell), so it may live up to twice the pool's lifetime.
    taken: Instant,
}

impl<DB: Database> Clone for Shelf<DB> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
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
            shared: Arc::new(Shared {
                pool,
                liveness,
                turns: Arc::new(Semaphore::new(connections)),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The pool under the shelf, for tests that look at its connections' settings.
    #[cfg(test)]
    pub fn pool(&self) -> &Pool<DB> {
        &self.shared.pool
    }

    /// Runs `read` on a connection lent by the shelf, kept for the next read if `read`
    /// succeeded (see [`Lent::finished`]), back to the pool otherwise.
    pub async fn read<T, E: From<sqlx::Error>>(
        &self,
        read: impl AsyncFnOnce(&mut DB::Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut lent = self.acquire().await?;
        let done = read(&mut lent.conn).await?;
        lent.finished();
        Ok(done)
    }

    /// A connection: the one kept most recently, else one from the pool; within the pool's
    /// acquire timeout, waiting in turn. Tested first as the pool would test it (see
    /// [`Shelf::new`]).
    pub async fn acquire(&self) -> Result<Lent<DB>, sqlx::Error> {
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + shared.pool.options().get_acquire_timeout();
        let turn = tokio::time::timeout_at(deadline, shared.turns.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let kept = lock(&shared.idle).pop();
            let Some(Kept {
                mut conn,
                since,
                taken,
            }) = kept
            else {
                // Fewer are lent and kept than the pool holds: it has one, or room for one.
                let conn = tokio::time::timeout_at(deadline, shared.pool.acquire())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)??;
                return Ok(self.lend(conn, Instant::now(), turn));
            };
            if shared.liveness.must_ping(since.elapsed()) {
                match tokio::time::timeout_at(deadline, conn.ping()).await {
                    Ok(Ok(())) => {}
                    // Dead (a server restart): closed, not pooled; try the next.
                    Ok(Err(_)) => {
                        conn.close_on_drop();
                        continue;
                    }
                    // Slow, not known dead: back to the pool, which tests it again.
                    Err(_) => return Err(sqlx::Error::PoolTimedOut),
                }
            }
            return Ok(self.lend(conn, taken, turn));
        }
    }

    fn lend(
        &self,
        conn: PoolConnection<DB>,
        taken: Instant,
        turn: OwnedSemaphorePermit,
    ) -> Lent<DB> {
        Lent {
            conn,
            taken,
            turn,
            shelf: self.shared.clone(),
        }
    }
}

/// A connection lent by a [`Shelf`]. Dropped, it goes back to the pool (with sqlx's ping); see
/// [`Lent::finished`].
pub(crate) struct Lent<DB: Database> {
    conn: PoolConnection<DB>,
    taken: Instant,
    /// Declared after `conn`: dropped unfinished, the connection is on its way back to the
    /// pool before the next caller's turn.
    turn: OwnedSemaphorePermit,
    shelf: Arc<Shared<DB>>,
}

impl<DB: Database> Lent<DB> {
    /// Its use ran to its end (every statement answered): kept for the next caller. Unless it
    /// sits inside a transaction (then to the pool, whose check closes it: `checked_pool`), or
    /// was taken from the pool longer ago than the pool lets a connection live (then to the
    /// pool, which closes it and makes another when needed).
    pub fn finished(self) {
        let Self {
            conn,
            taken,
            turn,
            shelf,
        } = self;
        let options = shelf.pool.options();
        let aged = options
            .get_max_lifetime()
            .is_some_and(|lifetime| taken.elapsed() > lifetime);
        if aged || conn.is_in_transaction() {
            drop(conn);
            drop(turn);
            return;
        }
        let unused = {
            let mut idle = lock(&shelf.idle);
            idle.push(Kept {
                conn,
                since: Instant::now(),
                taken,
            });
            // Those left unused longer than the pool's idle timeout go back to it, which closes
            // them once they sat idle there as long again: after a burst the shelf shrinks (at
            // the next finished read; nothing sweeps a shelf nobody reads from).
            // Kept in the order they came back, so those are a prefix.
            let old = options.get_idle_timeout().map_or(0, |timeout| {
                idle.partition_point(|k| k.since.elapsed() > timeout)
            });
            idle.drain(..old).collect::<Vec<_>>()
        };
        drop(turn);
        drop(unused);
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

    use futures::FutureExt;
    use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

    use super::*;

    /// A shelf over a pool of `connections` to a fresh SQLite file, and the file's directory.
    async fn shelf(connections: u32) -> (Shelf<sqlx::Sqlite>, std::path::PathBuf) {
        shelf_of(SqlitePoolOptions::new().max_connections(connections)).await
    }

    async fn shelf_of(options: SqlitePoolOptions) -> (Shelf<sqlx::Sqlite>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("shelf-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("db").display());
        let pool: SqlitePool = options
            .acquire_timeout(Duration::from_secs(60))
            .connect(&url)
            .await
            .unwrap();
        (Shelf::new(pool, Liveness::default()), dir)
    }

    /// Drops the shelf and its file.
    fn remove(shelf: Shelf<sqlx::Sqlite>, dir: std::path::PathBuf) {
        drop(shelf);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn idle<DB: Database>(shelf: &Shelf<DB>) -> usize {
        lock(&shelf.shared.idle).len()
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
        remove(shelf, dir);
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
        remove(shelf, dir);
    }

    #[tokio::test]
    async fn a_caller_waiting_gets_the_connection_kept() {
        let (shelf, dir) = shelf(1).await;
        let mut conn = shelf.acquire().await.unwrap();
        mark(&mut conn).await;
        let waiting = shelf.clone();
        let mut waiter = std::pin::pin!(waiting.acquire());
        assert!(waiter.as_mut().now_or_never().is_none(), "waits its turn");
        conn.finished();
        // Were it kept from the waiter, the waiter would wait the pool's whole acquire timeout
        // (60 s) and then fail.
        let got = tokio::time::timeout(Duration::from_secs(30), waiter).await;
        let mut conn = got.expect("in time").unwrap();
        assert!(is_marked(&mut conn).await, "the kept connection");
        conn.finished();
        assert_eq!(
            (idle(&shelf), shelf.shared.turns.available_permits()),
            (1, 1)
        );
        remove(shelf, dir);
    }

    #[tokio::test]
    async fn a_caller_waits_no_longer_than_the_acquire_timeout() {
        let (shelf, dir) = shelf(1).await;
        let options = shelf.pool().connect_options().as_ref().clone();
        let shelf = Shelf::new(
            SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_millis(50))
                .connect_lazy_with(options),
            Liveness::default(),
        );
        let held = shelf.acquire().await.unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(30), shelf.acquire())
            .await
            .expect("given up within the acquire timeout")
            .map(|_| ());
        assert!(
            matches!(waited, Err(sqlx::Error::PoolTimedOut)),
            "{waited:?}"
        );
        held.finished();
        remove(shelf, dir);
    }

    #[tokio::test]
    async fn a_connection_past_the_pools_lifetime_is_not_kept() {
        let options = SqlitePoolOptions::new()
            .max_connections(1)
            .max_lifetime(Duration::from_nanos(1));
        let (shelf, dir) = shelf_of(options).await;
        let conn = shelf.acquire().await.unwrap();
        std::thread::sleep(Duration::from_millis(1));
        conn.finished();
        assert_eq!(idle(&shelf), 0, "to the pool, which closes it");
        shelf.acquire().await.unwrap().finished();
        remove(shelf, dir);
    }

    #[tokio::test]
    async fn connections_unused_past_the_pools_idle_timeout_go_back_to_it() {
        let options = SqlitePoolOptions::new()
            .max_connections(2)
            .idle_timeout(Duration::from_millis(1));
        let (shelf, dir) = shelf_of(options).await;
        let (first, second) = (
            shelf.acquire().await.unwrap(),
            shelf.acquire().await.unwrap(),
        );
        first.finished();
        std::thread::sleep(Duration::from_millis(2));
        second.finished();
        assert_eq!(idle(&shelf), 1, "the one unused too long went back");
        remove(shelf, dir);
    }

    /// After a server restart the kept connections are dead: while the database is distrusted
    /// each is tested before it is lent, and a dead one is closed, not lent.
    #[tokio::test]
    async fn a_dead_kept_connection_is_not_lent_while_the_database_is_distrusted() {
        use sqlx::postgres::PgPoolOptions;
        let Some(url) = testkit::fresh_postgres_url().await else {
            return;
        };
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .unwrap();
        let liveness = Liveness::default();
        let shelf = Shelf::new(pool.clone(), liveness.clone());
        let mut conn = shelf.acquire().await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        conn.finished();
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&admin)
            .await
            .unwrap();
        liveness.distrust();
        let mut conn = shelf.acquire().await.unwrap();
        let lent: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .expect("a live connection");
        assert_ne!(lent, pid);
        conn.finished();
        assert_eq!(idle(&shelf), 1, "the dead one is gone");
    }
}
