//! What the store and the read models need from sqlx beyond its API as it stands.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database, Pool, Transaction};

mod shelf;

pub(crate) use shelf::Shelf;

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
///
/// A `BEGIN` whose connection died in the pool (a server restart) is tried again on another:
/// nothing ran yet, so a write after a restart does not fail once per pooled connection. Later
/// statements are never retried (a write's outcome is unknown once its connection drops); a
/// read is, once ([`Liveness::read`]).
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

#[allow(clippy::disallowed_methods)] // the one place that may call it
async fn begin_in_task<DB: Database>(
    pool: &Pool<DB>,
    statement: Option<&'static str>,
) -> Result<Transaction<'static, DB>, sqlx::Error> {
    let pool = pool.clone();
    let begun = to_the_end(async move {
        let options = pool.options();
        let deadline = Instant::now() + options.get_acquire_timeout();
        // One try per pooled connection (sqlx closes one whose `BEGIN` failed when it goes
        // back) and one on a new one, all within one acquire timeout.
        let mut lost = None;
        for _ in 0..=options.get_max_connections() {
            let left = deadline.saturating_duration_since(Instant::now());
            // Cancel-safe, unlike `BEGIN`: a connection is only handed out when it returns.
            let conn = match tokio::time::timeout(left, pool.acquire()).await {
                Ok(Ok(conn)) => conn,
                // The lost connection says better than a wait why there is none.
                Ok(Err(e)) => return Err(lost.unwrap_or(e)),
                Err(_) => return Err(lost.unwrap_or(sqlx::Error::PoolTimedOut)),
            };
            match Transaction::begin(conn, statement.map(Cow::Borrowed)).await {
                Err(e) if crate::store::is_connection_lost(&e) => {
                    tracing::debug!(error = %e, "BEGIN found its connection dead; trying another");
                    lost.get_or_insert(e);
                }
                begun => return begun,
            }
        }
        Err(lost.unwrap_or(sqlx::Error::PoolTimedOut))
    });
    begun.await.unwrap_or_else(|| {
        Err(sqlx::Error::Io(std::io::Error::other(
            "the runtime is shutting down",
        )))
    })
}

/// Runs `work` in a task of its own, to its end even if the caller stops waiting for it; a
/// panic in it is the caller's. `None` only when the runtime shuts down (the task is dropped
/// like any other then).
pub(crate) async fn to_the_end<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    match tokio::spawn(work).await {
        Ok(done) => Some(done),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// How long a pooled connection may sit idle before it is pinged on checkout.
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// After the database was seen unavailable, every connection handed out in this window is
/// pinged first: long enough to cover the requests in flight during a server restart. Waits
/// for the pool renew it until something succeeds again (`Liveness::note`).
const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// The options every pool of ours starts from: a connection is tested on checkout only after
/// it sat idle a while, and one that comes back still inside a transaction is closed, never
/// handed out again.
///
/// Why test only after idle: sqlx pings every connection it hands out (`test_before_acquire`)
/// and again whenever one goes back, so each checkout cost three round trips instead of one;
/// at peak that was 12 of a login's 20 round trips to PostgreSQL. Under load a connection is
/// back in use within milliseconds and the ping on its return (or, for a read's connection kept
/// on a [`Shelf`], the read's own answer) already tested it; one that sat idle (a database
/// restart meanwhile) is still tested before use.
///
/// Why close a connection still in a transaction: when SQLite fails a `COMMIT` (a full disk:
/// `SQLITE_FULL`, an I/O error), or a full disk fails a statement it keeps no statement
/// journal for (the read models' `INSERT OR FAIL`), it may roll the transaction back by
/// itself; sqlx then still counts it open, its `ROLLBACK` on drop fails ("no transaction is
/// active"), and the count stays at one for good. Pooled again, that connection refused every
/// later `BEGIN IMMEDIATE` ("attempted to call begin_with at non-zero transaction depth") and,
/// with a plain `BEGIN`, opened a savepoint instead; had the transaction survived with its
/// rollback failing too, it would have kept the database's write lock. Every write answered 500
/// until a restart, even once the disk had room again. A fresh connection has none of that state.
pub fn checked_pool<DB: Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    Liveness::default().tested(options)
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

/// How the request path waits for the database (`IDENTITY_DATABASE_ACQUIRE_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// How long a caller waits for a pooled connection, connecting included (sqlx keeps
    /// retrying a refused connection until then), and on SQLite how long a statement waits
    /// for a lock another process holds on the file (its busy timeout): past it the database
    /// counts as unavailable and a request answers 503 `database_unavailable`.
    pub acquire_timeout: Duration,
    /// How long a process starting waits for the database to accept connections.
    pub startup_wait: Duration,
}

impl PoolSettings {
    /// The service's default: a request learns within a second that the database is away.
    pub const REQUESTS: Self = Self {
        acquire_timeout: Duration::from_secs(1),
        startup_wait: Duration::from_secs(10),
    };

    /// For commands and tools that would rather wait than fail (the CLI, tests, benchmarks):
    /// 10 s for a connection, or for SQLite's lock.
    pub const PATIENT: Self = Self {
        acquire_timeout: Duration::from_secs(10),
        startup_wait: Duration::from_secs(10),
    };
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self::REQUESTS
    }
}

/// Opens a pool whose connections are made lazily, then waits up to `startup_wait` for the
/// database to hand one out: a service started beside its database waits for it, while later
/// requests wait only the (short) acquire timeout.
pub async fn open_pool<DB: Database>(
    options: PoolOptions<DB>,
    connect: <DB::Connection as Connection>::Options,
    settings: &PoolSettings,
) -> Result<Pool<DB>, sqlx::Error> {
    let pool = options
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(connect);
    let deadline = Instant::now() + settings.startup_wait;
    loop {
        match pool.acquire().await {
            Ok(_) => return Ok(pool),
            Err(e) if crate::store::is_sqlx_unavailable(&e) && Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for the database");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A pool's view of its database's health: connections are pinged on checkout after they sat
/// idle, and while the database is seen unavailable and for a moment (`SUSPECT_FOR`) after, so
/// that after a server restart the dead connections still pooled are found by a ping, not by a
/// request. Cheap to clone; clones share the view.
#[derive(Debug, Clone)]
pub struct Liveness {
    /// When this view was made: `suspect_until` counts milliseconds from here.
    origin: Instant,
    suspect_until: Arc<AtomicU64>,
    /// A failure of the database's own was seen, and nothing has succeeded since.
    down: Arc<AtomicBool>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            suspect_until: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Liveness {
    /// `options`, testing connections on checkout as described above, and closing one that
    /// comes back inside a transaction ([`checked_pool`]).
    pub fn tested<DB: Database>(&self, options: PoolOptions<DB>) -> PoolOptions<DB> {
        let liveness = self.clone();
        options
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let ping = liveness.must_ping(meta.idle_for);
                Box::pin(async move {
                    if ping {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_release(|conn, _| Box::pin(ended_its_transactions::<DB>(conn)))
    }

    /// The database was seen unavailable: test every connection handed out for a while.
    pub fn distrust(&self) {
        let until = self.origin.elapsed() + SUSPECT_FOR;
        self.suspect_until
            .fetch_max(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether a connection idle for `idle_for` is to be pinged before it is handed out.
    fn must_ping(&self, idle_for: Duration) -> bool {
        self.suspect() || idle_for > PING_AFTER_IDLE
    }

    fn suspect(&self) -> bool {
        self.now() < self.suspect_until.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Distrusts the database after a failure of its own, and after a wait for the pool while
    /// it is down (a failure seen, nothing succeeded since): once the pooled connections are
    /// found dead, new ones are refused for as long as the server is away, and those refusals
    /// arrive as pool waits. Without them the window ran out during a longer outage, and the
    /// first writes after the server's return met the connections that had sat in the pool
    /// meanwhile, dead. A pool wait while the database works (a flood) distrusts nothing.
    fn note(&self, error: &(dyn std::error::Error + 'static)) {
        if crate::store::is_database_failure(error) {
            self.down.store(true, Ordering::Relaxed);
            self.distrust();
        } else if crate::store::is_pool_wait(error) && self.down.load(Ordering::Relaxed) {
            self.distrust();
        }
    }

    /// Something worked: the database is up (pings go on until the distrust runs out).
    fn up(&self) {
        if self.down.load(Ordering::Relaxed) {
            self.down.store(false, Ordering::Relaxed);
        }
    }

    /// Runs `read`, an idempotent read (it changes nothing, so running it twice is safe), and
    /// when it failed because its connection was lost (a server restart killed it), once more:
    /// on a tested connection, as the pool then pings every connection it hands out. A pool
    /// that had no connection in time is not asked again: that already took the whole
    /// acquire timeout. Never for a write: its outcome is unknown when the connection drops.
    pub async fn read<T, E, Fut>(&self, mut read: impl FnMut() -> Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: std::error::Error + 'static,
    {
        let outcome = match read().await {
            Err(e) if crate::store::is_database_unavailable(&e) => {
                self.note(&e);
                if !crate::store::is_connection_lost(&e) {
                    return Err(e);
                }
                tracing::debug!(error = %e, "a read lost its connection; reading again");
                read().await
            }
            done => done,
        };
        self.observe(&outcome);
        outcome
    }

    /// Notes the outcome of any statement: a failure that says the database is unavailable
    /// has the next checkouts tested (`note`); a success says the database is up.
    pub fn observe<T, E: std::error::Error + 'static>(&self, outcome: &Result<T, E>) {
        match outcome {
            Ok(_) => self.up(),
            Err(e) => self.note(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
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

    /// Lets the distrust of `view` run out, as if its last renewal were long ago.
    fn run_out(view: &Liveness) {
        view.suspect_until.store(0, Ordering::Relaxed);
        assert!(!view.suspect());
    }

    #[test]
    fn a_pool_wait_renews_distrust_only_while_the_database_is_down() {
        let waited = Err::<(), _>(sqlx::Error::PoolTimedOut);
        let lost = Err::<(), _>(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        let view = Liveness::default();
        // A flood, the database fine: nothing is distrusted.
        view.observe(&waited);
        assert!(!view.suspect());
        // A failure of the database's own distrusts it.
        view.observe(&lost);
        assert!(view.suspect());
        // Long after, the server still refuses new connections: a wait renews the distrust.
        run_out(&view);
        view.observe(&waited);
        assert!(view.suspect());
        // Once something worked, a wait is only a wait.
        view.observe(&Ok::<(), sqlx::Error>(()));
        run_out(&view);
        view.observe(&waited);
        assert!(!view.suspect());
    }

    const SHORT: PoolSettings = PoolSettings {
        acquire_timeout: Duration::from_millis(300),
        startup_wait: Duration::ZERO,
    };

    /// Opens a pool on `port` as the service would; the error and how long it took.
    async fn open_on(port: u16) -> (sqlx::Error, Duration) {
        let options =
            PgConnectOptions::from_str(&format!("postgres://nobody@127.0.0.1:{port}/none"))
                .expect("a URL");
        let started = Instant::now();
        let pool = open_pool(
            Liveness::default().tested(PgPoolOptions::new()),
            options,
            &SHORT,
        )
        .await;
        (pool.expect_err("no server"), started.elapsed())
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_within_the_acquire_timeout() {
        // A port nobody listens on: sqlx retries the refused connection until the deadline.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let (error, took) = open_on(port).await;
        assert!(crate::store::is_sqlx_unavailable(&error), "{error:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[tokio::test]
    async fn a_hung_server_is_unavailable_within_the_acquire_timeout() {
        // Accepts connections and never answers (a server frozen, a network dropping
        // packets after the handshake).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let (error, took) = open_on(port).await;
        held.abort();
        assert!(crate::store::is_sqlx_unavailable(&error), "{error:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[tokio::test]
    async fn a_read_that_lost_its_connection_is_read_once_more() {
        let liveness = Liveness::default();
        let mut attempts = 0;
        let read: Result<u32, crate::store::StoreError> = liveness
            .read(|| {
                attempts += 1;
                let attempt = attempts;
                async move {
                    if attempt == 1 {
                        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                        Err(sqlx::Error::Io(reset).into())
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await;
        assert_eq!(read.expect("the second attempt"), 2);
        assert!(liveness.suspect(), "connections are tested for a while");

        // A pool that had no connection in time already waited its whole timeout.
        let mut attempts = 0;
        let timed_out: Result<(), crate::store::StoreError> = Liveness::default()
            .read(|| {
                attempts += 1;
                async { Err(sqlx::Error::PoolTimedOut.into()) }
            })
            .await;
        assert!(timed_out.is_err());
        assert_eq!(attempts, 1);
    }
}
