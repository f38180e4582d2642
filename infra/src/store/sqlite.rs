//! SQLite: the embedded default, one service instance.
//!
//! Every write goes through a pool of one connection, and appends (a new user's data key rides
//! in the registration's append) go through one writer task that commits whatever queued meanwhile in one `BEGIN IMMEDIATE`
//! transaction (group commit; see `writer`). Writers are serialised, so an
//! event's position (the rowid) follows commit order. Reads use a separate pool; in WAL mode
//! they run beside the writer and each statement sees a committed prefix of the log.

mod append;
mod checkpoint;
mod codec;
mod turn;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{StreamId, UserId};
use futures::stream::BoxStream;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Connection as _;

use super::shared::{event_columns, Arg, Pools, SqlStore, ADVANCE_RELAY};
use super::signal::AppendSignal;
use super::write_health::WriteHealth;
use super::{AppendBatch, AppendError, OneTimeLock, RecordedEvent, RelayLease, StoreError};
use crate::database_url::DatabaseUrl;
use crate::sql::{PoolSettings, Shelf};

pub use checkpoint::Checkpointer;
pub use turn::{write_turn, HeldTurn, WriteTurn};

pub struct SqliteStore {
    /// Reads on a pool of their own; writes on one connection, in the store file's write turn
    /// (see `turn`).
    sql: Pools<sqlx::Sqlite>,
    /// The log's readers (`read_all`): their statements stream, so they return their
    /// connection the usual way, on a pool apart from the shelf of `sql.read`.
    log: SqlitePool,
    signal: AppendSignal,
    /// The queue of the task that writes appends (`writer`).
    appends: tokio::sync::mpsc::Sender<writer::Job>,
    /// Checkpoints the WAL and empties it when asked; stops when the store is dropped.
    checkpointer: Checkpointer,
    /// The database file (its one-time migration lock file lies beside it).
    path: std::path::PathBuf,
}

/// SQLite's own page cache per connection, in KiB (`PRAGMA cache_size = -N`), for the store's
/// connections and the read models' alike (fifteen connections at most; the read models' four
/// readers keep one for each of the two files they read). With SQLite's default, 2,000 KiB,
/// a soak's resident set climbed about 7 MiB after its second minute; with 256 KiB, about 2.6
/// (RELIABILITY.md), at the same peak and CPU, but with a worse login p99 at 70 % of peak in
/// paired full-scale runs (BENCHMARKS.md; not paired again since). Under steady writes a
/// connection's cache is emptied at each transaction after another connection's commit (WAL
/// mode), so it was worth little; what it bounds is the pages a reader's transaction holds (a
/// writer's may change up to `SQLITE_WRITER_SPILL_PAGES`), whose memory each connection's
/// worker thread kept at its highest. The file's pages stay in the OS's page cache.
pub const SQLITE_PAGE_CACHE_KIB: u32 = 256;

pub use checkpoint::WAL_SIZE_LIMIT as SQLITE_WAL_SIZE_LIMIT;

/// How many pages a write connection's transaction may change before SQLite writes some of
/// them out early (`PRAGMA cache_spill`), for the store's writer and the read models' alike. By
/// default that is the page cache's size, 64 pages, which a group commit of 30 logins passes
/// (each touches a few random leaf pages: streams, claims, session keys): the early pages went to
/// the WAL mid-transaction and again at commit, 3 % of identityd's CPU at peak. 1,000 pages
/// (4 MB) bound what one transaction holds; the clean cache stays at `SQLITE_PAGE_CACHE_KIB`.
/// Not 1,024: SQLite also reads the number as on/off through a `u8`, and 1,024 (like every
/// multiple of 256) turns spilling off altogether, which would leave a large transaction's
/// pages unbounded.
pub const SQLITE_WRITER_SPILL_PAGES: u32 = 1000;

/// The store's writer's `temp_store` (see where it is set).
const WRITER_TEMP_STORE: &str = "MEMORY";

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `sqlite://path` or `sqlite:path`,
    /// and runs the migrations. (An in-memory database is no `DatabaseUrl`: the two pools would
    /// each get their own.) Waits patiently for locks (`PoolSettings::PATIENT`).
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        Self::connect_with(url, &PoolSettings::PATIENT).await
    }

    /// `connect`, with a statement waiting `settings.acquire_timeout` at most for a lock that
    /// another process holds (a CLI command writing, a backup) before it fails as busy (a 503
    /// for a request), and a read waiting as long at most for a pooled connection. Within the
    /// process, writers wait for the write turn instead, in order (see `turn`).
    pub async fn connect_with(
        url: &DatabaseUrl,
        settings: &PoolSettings,
    ) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url.as_str())?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An append is answered once it is on disk: `FULL` syncs the WAL at each commit
            // (once per group of appends). With `NORMAL` a power cut or OS crash could take
            // back logins already answered: tokens naming a user who no longer exists, and
            // the same openid registered again as someone else.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted rows (an erased user's data key, a released claim) are overwritten with
            // zeros, not left in free pages of the file.
            .pragma("secure_delete", "ON")
            .pragma("cache_size", format!("-{SQLITE_PAGE_CACHE_KIB}"))
            .busy_timeout(settings.acquire_timeout);
        let path = options.get_filename().to_path_buf();
        let write = crate::sql::checked_pool(SqlitePoolOptions::new())
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // Checkpoints run beside the writer, not inside its commits (see `checkpoint`).
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", "0")
                    .pragma("cache_spill", SQLITE_WRITER_SPILL_PAGES.to_string())
                    // Temporary files in memory, above all statement journals (what undoes one
                    // statement of a group, or a savepoint): SQLite writes them to a file made
                    // per transaction past 64 KiB, which a group commit of a few dozen logins
                    // passes. Each is cut back when its statement ends, so they are bounded by
                    // what one statement writes: a group of appends, one user's erasure. The one
                    // unbounded user, `VACUUM`, turns it off (`compact`). Not on the read models'
                    // writer, whose rebuild's `users` upserts journal megabytes of pages.
                    .pragma("temp_store", WRITER_TEMP_STORE)
                    .pragma("journal_size_limit", checkpoint::WAL_SIZE_LIMIT),
            )
            .await?;
        // As patient with another process's lock as the service is with its database at
        // start (a migration may find the file busy where a request would answer 503).
        let mut migrating = sqlx::SqliteConnection::connect_with(
            &options.clone().busy_timeout(settings.startup_wait),
        )
        .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut migrating)
            .await?;
        migrating.close().await?;
        let readers = |connections| {
            crate::sql::checked_pool(SqlitePoolOptions::new())
                .max_connections(connections)
                .acquire_timeout(settings.acquire_timeout)
                .connect_with(options.clone().pragma("query_only", "ON"))
        };
        // One process owns the file: no connection to lose, nothing to distrust (a write
        // failing as busy or full says nothing about the readers' connections).
        let read = Shelf::new(readers(4).await?, crate::sql::Liveness::default());
        let log = readers(4).await?;
        let turn = write_turn(&path);
        let checkpointer = Checkpointer::spawn(options, Arc::clone(&turn), "the WAL checkpoint");
        let (appends, queue) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(writer::run(write.clone(), Arc::clone(&turn), queue));
        Ok(Self {
            sql: Pools {
                read,
                write,
                turn: Some(turn),
                health: WriteHealth::default(),
                liveness: Default::default(),
            },
            log,
            signal: AppendSignal::new(),
            appends,
            checkpointer,
            path,
        })
    }
}

/// `read_all`: the log after a position, in position order.
const READ_ALL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
);

#[async_trait]
impl SqlStore for SqliteStore {
    type Sql = Pools<sqlx::Sqlite>;

    fn signal(&self) -> &AppendSignal {
        &self.signal
    }

    fn sql(&self) -> &Self::Sql {
        &self.sql
    }

    /// Queued for the writer task, which commits it with the appends queued meanwhile.
    async fn write(&self, batch: AppendBatch) -> Result<Vec<RecordedEvent>, AppendError> {
        let (reply, appended) = tokio::sync::oneshot::channel();
        let gone = || StoreError::SharedWrite {
            message: "the SQLite writer has stopped".into(),
            unavailable: true,
        };
        let ticket = self.sql.turn.as_ref().map_or(0, |turn| turn.ticket());
        self.appends
            .send(writer::Job {
                batch,
                reply,
                ticket,
            })
            .await
            .map_err(|_| gone())?;
        appended.await.map_err(|_| gone())?
    }

    /// One statement with a placeholder per stream (SQLite has no arrays).
    async fn load_stream_rows(
        &self,
        streams: &[StreamId],
        user: UserId,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        let placeholders = vec!["?"; streams.len()].join(", ");
        let sql = format!(
            "SELECT {}, (SELECT sealed_key FROM user_data_keys WHERE user_id = ?) \
             FROM events WHERE stream_id IN ({placeholders}) \
             ORDER BY stream_id, stream_version",
            event_columns!()
        );
        let query = sqlx::query(&sql).bind(user.as_uuid().to_string());
        let query = streams
            .iter()
            .fold(query, |query, stream| query.bind(stream.as_str()));
        self.sql
            .read
            .read(async |conn| Ok(query.fetch_all(conn).await?))
            .await
    }

    /// Decoded as the rows arrive: sqlx steps the statement on the connection's own thread,
    /// so the reader's work overlaps with SQLite producing the next rows.
    fn read_all_rows(
        &self,
        after: i64,
        limit: u32,
    ) -> BoxStream<'_, Result<SqliteRow, sqlx::Error>> {
        sqlx::query(READ_ALL)
            .bind(after)
            .bind(limit)
            .fetch(&self.log)
    }

    /// The WAL checkpointer empties the WAL (see `Checkpointer`); once it has, or has given up
    /// on readers that kept it (this warns; the next erasure or start tries again).
    async fn purge_deleted(&self) -> Result<(), StoreError> {
        if !self.checkpointer.purge().await? {
            tracing::warn!(
                "the WAL could not be truncated: readers kept it busy; the next erasure or \
                 start tries again"
            );
        }
        Ok(())
    }

    /// One instance: this host's clock is the database's.
    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        Ok(Utc::now())
    }

    /// No lock: a lease is the checkpoint as read, and `advance` moves it only from there
    /// (compare and set), so two relays in one process could not move it backwards. No
    /// transaction spans the batch on purpose: it would hold SQLite's single write lock, and
    /// so stop every append, while the relay waits for NATS.
    async fn try_lock_relay(&self, name: &str) -> Result<Option<Box<dyn RelayLease>>, StoreError> {
        let position = super::RelayCheckpointStore::relay_checkpoint(self, name)
            .await?
            .map_or(0, |c| c.position);
        Ok(Some(Box::new(RelayBatch {
            sql: self.sql.clone(),
            name: name.to_owned(),
            position,
        })))
    }

    /// Another process (a second instance, `identityd migrate`) may open the same file: an
    /// exclusive lock on a file beside it, which the OS releases if the process dies.
    async fn one_time_lock(&self) -> Result<OneTimeLock, StoreError> {
        let mut name = self.path.clone().into_os_string();
        name.push("-one-time.lock");
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&name)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("one-time lock: {e}")))?
        .map_err(|e| StoreError::Corrupt(format!("one-time lock file: {e}")))?;
        Ok(OneTimeLock::new(file))
    }

    /// `VACUUM`: `secure_delete` only zeroes what is deleted after it was turned on. It builds
    /// its copy of the database in a temporary one: on disk, not in the writer's memory. One
    /// call, so one connection and one turn; if it fails part-way, the setting is put back
    /// (or the writer stays on files, which is only slower).
    async fn compact(&self) -> Result<(), StoreError> {
        use super::shared::Sql;
        let back = format!("PRAGMA temp_store = {WRITER_TEMP_STORE}");
        let vacuum = format!("PRAGMA temp_store = FILE; VACUUM; {back}");
        let vacuumed = Sql::execute(&self.sql, &vacuum, &[]).await;
        if vacuumed.is_err() {
            let _ = Sql::execute(&self.sql, &back, &[]).await;
        }
        vacuumed?;
        Ok(())
    }
}

/// One relay batch: the checkpoint as read.
struct RelayBatch {
    sql: Pools<sqlx::Sqlite>,
    name: String,
    position: i64,
}

#[async_trait]
impl super::RelayLease for RelayBatch {
    fn position(&self) -> i64 {
        self.position
    }

    async fn advance(self: Box<Self>, position: i64) -> Result<bool, StoreError> {
        let args = [
            Arg::Text(&self.name),
            Arg::Int(position),
            Arg::time(Utc::now()),
            Arg::Int(self.position),
        ];
        let moved = super::shared::Sql::execute(&self.sql, ADVANCE_RELAY, &args).await?;
        Ok(moved == 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Instant;

    use super::super::shared::Sql;
    use super::*;

    /// A write cut short by its caller while another process holds the file's lock still
    /// waits out its turn, and its BUSY fails the write queued behind it at once. (Before,
    /// its statement went on in SQLite's worker after its turn had passed: the next write
    /// waited for it unaware, then its own whole busy wait, and failed with BUSY of its own.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_cut_short_still_fails_the_writes_behind_it_when_the_file_is_busy() {
        let dir = std::env::temp_dir().join(format!("cut-short-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("db");
        let url = DatabaseUrl::parse(&format!("sqlite://{}", file.display())).unwrap();
        let settings = PoolSettings::REQUESTS;
        let store = SqliteStore::connect_with(&url, &settings).await.unwrap();
        let mut elsewhere =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                .await
                .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut elsewhere)
            .await
            .unwrap();
        let write = "DELETE FROM attempt_counters WHERE window_start < $1";

        let started = Instant::now();
        let cut_short = tokio::time::timeout(
            Duration::from_millis(300),
            store.sql.execute(write, &[Arg::Int(0)]),
        )
        .await;
        assert!(cut_short.is_err(), "the first write was not cut short");
        let behind = store.sql.execute(write, &[Arg::Int(0)]).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(behind, StoreError::QueuedBehindBusy(_)),
            "the write behind did not fail with the first one's BUSY: {behind}"
        );
        // About one busy wait, not two (the error alone tells the two apart; this bound is
        // loose for a loaded machine).
        assert!(
            took < settings.acquire_timeout * 9 / 5,
            "it answered after {took:?}"
        );

        sqlx::query("ROLLBACK")
            .execute(&mut elsewhere)
            .await
            .unwrap();
        store.sql.execute(write, &[Arg::Int(0)]).await.unwrap();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn pragma(pool: &sqlx::SqlitePool, name: &str) -> i64 {
        sqlx::query_scalar(&format!("PRAGMA {name}"))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// The store's pools keep a small page cache per connection (see `SQLITE_PAGE_CACHE_KIB`);
    /// its writer lets a transaction change more pages than that before any is written out, and
    /// keeps its temporary files in memory, except while compacting. The bundled SQLite was
    /// compiled with the repository's flags (`.cargo/config.toml`): without them it still
    /// works, only slower, so nothing else would notice.
    #[tokio::test]
    async fn the_store_s_connections_have_their_settings() {
        let dir = std::env::temp_dir().join(format!("page-cache-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.join("db").display())).unwrap();
        let store = SqliteStore::connect(&url).await.unwrap();
        let expected = -i64::from(SQLITE_PAGE_CACHE_KIB);
        for pool in [store.sql.read.pool(), &store.sql.write, &store.log] {
            assert_eq!(pragma(pool, "cache_size").await, expected);
        }
        assert_eq!(
            pragma(&store.sql.write, "cache_spill").await,
            i64::from(SQLITE_WRITER_SPILL_PAGES)
        );
        // Temporary files in memory on the writer only (2 is MEMORY, 0 the default), again
        // after a compaction, which did compact: no free page left.
        let freed = "CREATE TABLE scratch AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL \
                     SELECT i + 1 FROM n WHERE i < 1000) SELECT hex(randomblob(100)) FROM n; \
                     DROP TABLE scratch";
        sqlx::raw_sql(freed)
            .execute(&store.sql.write)
            .await
            .unwrap();
        assert!(pragma(&store.sql.write, "freelist_count").await > 0);
        store.compact().await.unwrap();
        assert_eq!(pragma(&store.sql.write, "freelist_count").await, 0);
        for (pool, expected) in [(&store.sql.write, 2), (store.sql.read.pool(), 0)] {
            assert_eq!(pragma(pool, "temp_store").await, expected);
        }
        let options: Vec<String> = sqlx::query_scalar("SELECT * FROM pragma_compile_options")
            .fetch_all(store.sql.read.pool())
            .await
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "DEFAULT_MEMSTATUS=0 not in {options:?}"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
