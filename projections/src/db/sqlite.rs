//! The read models on SQLite: one instance, one writer, in a file of their own beside the event
//! store's (`infra::database_url::sqlite_read_models_url`). All read-model writes queue on one
//! connection and in that file's write turn (`infra::store::sqlite_write_turn`), which the
//! store's appends do not share: a batch neither waits for appends nor makes them wait, and
//! neither writer's page cache is emptied by the other's commits. A write transaction holds the
//! file's write lock from its first statement, so it needs no lock of its own.
//!
//! The read connections attach the store's file for the two queries that read it beside the
//! read models, the log's head (`events`) and the refused-login tallies (`login_rejections`):
//! SQLite finds a table name that is not in the main file in the attached one.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, Executor};

use infra::sql::PoolSettings;
use infra::store::{SqliteCheckpointer, SqliteWriteTurn};

mod leftovers;

use leftovers::Leftovers;

use super::{Begun, Db, Dialect};
use crate::error::ProjectionError;

/// Opens the read models' pools on their own file beside the store's, after dropping what an
/// older version left in the store's file. A statement waits `settings.acquire_timeout` at
/// most for a lock another process holds, and a query as long for a read connection, as the
/// store's do.
pub(super) async fn connect(url: &str, settings: &PoolSettings) -> Result<Db, ProjectionError> {
    let busy_timeout = format!(
        "PRAGMA busy_timeout = {}",
        settings.acquire_timeout.as_millis()
    );
    // Create the file if missing, as the store does.
    let store_url = if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let store_path = filename(&store_url)?;
    leftovers::drop_read_models(
        &store_url,
        &store_path,
        Leftovers::InTheStoreFile,
        &busy_timeout,
    )
    .await?;
    // Created when missing whatever the store's URL says: it builds again from the log.
    let url = create_if_missing(&infra::database_url::sqlite_read_models_url(url));
    if leftovers::ahead_of_the_log(&url, &store_url).await? {
        // The store's file was restored from a backup (or replaced) beside newer read models:
        // their checkpoints would skip the positions the log reuses.
        tracing::warn!(
            "the read models are ahead of the event log (a restored store file?): dropping \
             them; they build again from the log"
        );
        leftovers::drop_read_models(
            &url,
            &filename(&url)?,
            Leftovers::AheadOfTheLog,
            &busy_timeout,
        )
        .await?;
    }
    let options = |writer: bool| {
        let busy_timeout = busy_timeout.clone();
        let store_path = store_path.to_string_lossy().into_owned();
        infra::sql::checked_pool(AnyPoolOptions::new()).after_connect(move |conn, _| {
            let busy_timeout = busy_timeout.clone();
            let store_path = store_path.clone();
            Box::pin(async move {
                conn.execute(busy_timeout.as_str()).await?;
                // Safe in WAL mode (a crash may lose the last commits, never corrupt; the
                // checkpoints are in this file too, so the runner applies them again), and it
                // spares an fsync per projection batch.
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                // Read-model rows deleted at an erasure are overwritten, not left in
                // free pages of the file.
                conn.execute("PRAGMA secure_delete = ON").await?;
                // A small page cache of its own, as the store's connections keep.
                let cache_size = format!(
                    "PRAGMA cache_size = -{}",
                    infra::store::SQLITE_PAGE_CACHE_KIB
                );
                conn.execute(cache_size.as_str()).await?;
                if writer {
                    // The writer may change more pages in a transaction than its cache holds
                    // before any is written out early, as the store's writer does. Its
                    // temporary files stay on disk (`temp_store`): a rebuild's `users` upserts
                    // journal megabytes of pages that existed before. It does not checkpoint:
                    // the file's checkpointer does, beside it (see `Sqlite::checkpointer`).
                    let spill = format!(
                        "PRAGMA cache_spill = {}",
                        infra::store::SQLITE_WRITER_SPILL_PAGES
                    );
                    conn.execute(spill.as_str()).await?;
                    // A rebuild grows the WAL: trimmed as the store's is when it starts over.
                    let limit = format!(
                        "PRAGMA journal_size_limit = {}",
                        infra::store::SQLITE_WAL_SIZE_LIMIT
                    );
                    conn.execute(limit.as_str()).await?;
                    conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                } else {
                    sqlx::query("ATTACH DATABASE ? AS store")
                        .bind(store_path)
                        .execute(&mut *conn)
                        .await?;
                    // `cache_size` above set the main file's; the attached one's too.
                    let cache_size = format!(
                        "PRAGMA store.cache_size = -{}",
                        infra::store::SQLITE_PAGE_CACHE_KIB
                    );
                    conn.execute(cache_size.as_str()).await?;
                }
                Ok(())
            })
        })
    };
    let write = options(true)
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&url)
        .await?;
    // Persistent, and a no-op once set.
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&write)
        .await?;
    // Before any write transaction: `begin`'s first statement writes to it. (One instance on
    // SQLite: no race to create it.)
    crate::checkpoint::create_table(&mut *write.acquire().await?, "INTEGER").await?;
    let turn = infra::store::sqlite_write_turn(&filename(&url)?);
    let checkpoint_options = SqliteConnectOptions::from_str(&url)?;
    let read = options(false)
        .max_connections(4)
        .acquire_timeout(settings.acquire_timeout)
        .connect(&url)
        .await?;
    Ok(Db {
        dialect: Arc::new(Sqlite {
            turn,
            checkpointer: OnceLock::new(),
            checkpoint_options,
            // A crash may have cut short the purge after an erasure: the runner's first step
            // finishes it (not here: a CLI command beside the service would hold its writer).
            purge_owed: AtomicBool::new(true),
            purge_failing: AtomicBool::new(false),
        }),
        write,
        read,
        // One process owns the file: no connection to lose, nothing to distrust.
        liveness: Default::default(),
    })
}

/// `url` with `mode=rwc` in place of any `mode` it names.
fn create_if_missing(url: &str) -> String {
    let (path, params) = url.split_once('?').unwrap_or((url, ""));
    let params: Vec<&str> = params
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("mode="))
        .chain(["mode=rwc"])
        .collect();
    format!("{path}?{}", params.join("&"))
}

fn filename(url: &str) -> Result<PathBuf, ProjectionError> {
    infra::database_url::sqlite_file(url).ok_or(ProjectionError::UnsupportedUrl)
}

impl Sqlite {
    fn checkpointer(&self) -> &SqliteCheckpointer {
        self.checkpointer.get_or_init(|| {
            SqliteCheckpointer::spawn(
                self.checkpoint_options.clone(),
                Arc::clone(&self.turn),
                "the read models' WAL checkpoint",
            )
        })
    }
}

#[derive(Debug)]
struct Sqlite {
    turn: Arc<SqliteWriteTurn>,
    /// The store's kind of checkpointer, for this file, started by the runners, a rebuild or a
    /// drop of retired generations (`Dialect::start_checkpointing`; a process that only reads
    /// or writes a few rows, `identityd projections status`, the bench's observer, starts
    /// none, and leaves the service's alone): it checkpoints on a connection and thread of its
    /// own instead of inside the writer's commits, which a rebuild, one chain of work, would
    /// otherwise wait for (BENCHMARKS.md, "Landed: the read models' checkpoints on a thread of
    /// their own"), and empties the WAL when a purge is owed (on another connection it would
    /// find the checkpoints busy, and they it).
    checkpointer: OnceLock<SqliteCheckpointer>,
    checkpoint_options: SqliteConnectOptions,
    /// A purge of the WAL failed (readers kept it past its wait) or may have been cut
    /// short by a crash: tried again after each runner step until it succeeds.
    purge_owed: AtomicBool,
    /// The owed purge failed and said so: later failures of the same debt log at debug.
    purge_failing: AtomicBool,
}

impl Dialect for Sqlite {
    /// Exactly `INTEGER`, for a primary key to be the rowid.
    fn int_type(&self) -> &'static str {
        "INTEGER"
    }

    fn point_view(&self, view: &str, select: &str) -> Vec<String> {
        vec![
            format!("DROP VIEW IF EXISTS {view}"),
            format!("CREATE VIEW {view} AS {select}"),
        ]
    }

    /// Queues for the read models' write turn (their one writer connection, and a busy file
    /// failing those queued behind: `SqliteWriteTurn`), then takes the write lock at once, with
    /// a write as the first statement, so nothing the transaction reads can be stale by the
    /// time it writes (a deferred transaction that reads first may fail to upgrade).
    ///
    /// Not `BEGIN IMMEDIATE` through `begin_with`: sqlx checks a custom BEGIN after it ran,
    /// and a task aborted in between would leave the pooled connection inside a transaction
    /// that nobody ends. `infra::sql::begin` cannot be cut short (see there why).
    fn begin<'a>(&'a self, db: &'a Db) -> BoxFuture<'a, Result<Begun, ProjectionError>> {
        Box::pin(async move {
            let turn = self.turn.take().await?;
            let mut tx = infra::sql::begin(&db.write).await?;
            // Matches no row, yet takes the write lock (waiting out the busy timeout). Busy
            // past it fails the writers queued for the turn too (see `SqliteWriteTurn`).
            let locked =
                sqlx::query("UPDATE projection_checkpoints SET updated_at = updated_at WHERE 0")
                    .execute(&mut *tx)
                    .await;
            turn.observe(&locked);
            locked?;
            Ok((tx, Some(turn)))
        })
    }

    /// In the write turn, on the writer, with no `BEGIN`: inside a transaction SQLite keeps a
    /// statement journal for every statement that may abort, and a `DROP TABLE` under
    /// `secure_delete` copies every page it zeroes into it first (BENCHMARKS.md, "Landed: old
    /// generations dropped after the swap").
    fn write_alone<'a>(
        &'a self,
        db: &'a Db,
        statement: &'a str,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let turn = self.turn.take().await?;
            self.start_checkpointing();
            let written = sqlx::query(statement).execute(&db.write).await;
            turn.observe(&written);
            written?;
            Ok(())
        })
    }

    /// One instance, and `begin` made the transaction the only writer.
    fn lock_init<'a>(
        &'a self,
        _conn: &'a mut AnyConnection,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move { Ok(()) })
    }

    /// Always free: `begin` already made the transaction the only writer.
    fn try_lock_all<'a>(
        &'a self,
        _conn: &'a mut AnyConnection,
        _names: &'a [&'a str],
    ) -> BoxFuture<'a, Result<bool, ProjectionError>> {
        Box::pin(async move { Ok(true) })
    }

    fn lock<'a>(
        &'a self,
        _conn: &'a mut AnyConnection,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move { Ok(()) })
    }

    /// Anonymous, because sqlx asks SQLite for each parameter's name when binding, and SQLite
    /// finds a name by walking the statement's list of named parameters: binding n `$N`
    /// parameters costs O(n²), which with thousands per multi-row `INSERT` was most of a
    /// rebuild's time. Anonymous parameters have no names to walk.
    fn placeholders(&self, _from: usize, count: usize) -> String {
        vec!["?"; count].join(", ")
    }

    /// `OR FAIL`: a constraint that fails ends the statement and leaves the rows it wrote
    /// before (the transaction rolls back anyway). With the default `ABORT` SQLite must be able
    /// to undo the statement alone, so inside a transaction it first copies every page the
    /// statement changes that existed when it began into a statement journal (a temporary
    /// file past 64 KiB, `temp_store` being left at its default): 6 % of a rebuild's samples,
    /// BENCHMARKS.md. An upsert's `DO UPDATE` keeps `ABORT` for its own checks, and with it
    /// the journal. Without a journal a full disk or lack of memory mid-statement ends the
    /// whole transaction inside SQLite, as an I/O error always did: its `ROLLBACK` then fails
    /// and the pool replaces the connection (`infra::sql::checked_pool`); the batch is applied
    /// again later, as after any error.
    fn insert_into(&self) -> &'static str {
        "INSERT OR FAIL INTO"
    }

    /// None: without statistics SQLite's planner prefers an index anyway, and `ANALYZE` reads
    /// every index of the table whole.
    fn analyze(&self, _table: &str) -> Option<String> {
        None
    }

    fn start_checkpointing(&self) {
        self.checkpointer();
    }

    fn owe_purge(&self) {
        self.purge_owed.store(true, Ordering::Relaxed);
    }

    /// Has the file's checkpointer copy the WAL into the file and truncate it, in the write
    /// turn (readers on the WAL waited for up to a second): the erased rows' older page images
    /// go with it. `secure_delete` has already overwritten them in the new ones
    /// (docs/security.md, §6).
    fn purge_if_owed<'a>(&'a self, _db: &'a Db) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if !self.purge_owed.swap(false, Ordering::Relaxed) {
                return;
            }
            let outcome = self.checkpointer().purge_once().await;
            if matches!(outcome, Ok(true)) {
                if self.purge_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the read models' WAL is emptied after an erasure at last");
                }
                return;
            }
            self.purge_owed.store(true, Ordering::Relaxed);
            // Once per debt, not at every runner step while a reader keeps the WAL.
            let first = !self.purge_failing.swap(true, Ordering::Relaxed);
            let error = outcome.err().map(|e| e.to_string());
            if first {
                tracing::warn!(
                    ?error,
                    "the read models' WAL could not be emptied (readers kept it, or the error): \
                     it may still hold pages from before an erasure; tried again after every \
                     runner step until it is"
                );
            } else {
                tracing::debug!(?error, "the read models' WAL is still not emptied");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use infra::sql::PoolSettings;
    use infra::store::{SQLITE_PAGE_CACHE_KIB, SQLITE_WRITER_SPILL_PAGES};

    use crate::db::Db;

    async fn pragma(pool: &sqlx::AnyPool, name: &str) -> i64 {
        sqlx::query_scalar(&format!("PRAGMA {name}"))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// Both pools keep the store's small page cache; the writer lets a transaction change more
    /// pages than that before any is written out early, as the store's writer does, but keeps
    /// its temporary files on disk (see `connect`).
    #[tokio::test]
    async fn the_writer_holds_more_changed_pages_than_its_cache() {
        let db = Db::connect(&testkit::fresh_sqlite_url(), &PoolSettings::PATIENT)
            .await
            .unwrap();
        for pool in [&db.write, &db.read] {
            assert_eq!(
                pragma(pool, "cache_size").await,
                -i64::from(SQLITE_PAGE_CACHE_KIB)
            );
            assert_eq!(pragma(pool, "temp_store").await, 0);
        }
        let spill = i64::from(SQLITE_WRITER_SPILL_PAGES);
        assert_eq!(pragma(&db.write, "cache_spill").await, spill);
        assert_ne!(pragma(&db.read, "cache_spill").await, spill);
    }

    /// An owed purge empties the read models' WAL (no older page image stays); one that a
    /// reader keeps from finishing stays owed, and the next call, once the reader has let go,
    /// finishes it.
    #[tokio::test]
    async fn an_owed_purge_empties_the_wal_once_readers_let_go() {
        use sqlx::Connection as _;

        let url = testkit::fresh_sqlite_url();
        let db = Db::connect(&url, &PoolSettings::PATIENT).await.unwrap();
        let write = |sql: &'static str| {
            let db = &db;
            async move {
                let mut tx = db.begin().await.unwrap();
                sqlx::query(sql).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
        };
        write("CREATE TABLE filler (body TEXT NOT NULL)").await;
        write("INSERT INTO filler VALUES (hex(randomblob(3000)))").await;
        let read_models = infra::database_url::sqlite_read_models_url(&url);
        let wal = format!("{}-wal", super::filename(&read_models).unwrap().display());
        let wal_size = || std::fs::metadata(&wal).unwrap().len();

        // A reader keeps its snapshot of the WAL while the next write lands.
        let mut reader = sqlx::SqliteConnection::connect(&read_models).await.unwrap();
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        sqlx::query("SELECT count(*) FROM filler")
            .execute(&mut reader)
            .await
            .unwrap();
        write("INSERT INTO filler VALUES (hex(randomblob(3000)))").await;
        db.dialect.owe_purge();
        db.dialect.purge_if_owed(&db).await;
        assert!(wal_size() > 0, "kept by the reader");

        sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
        db.dialect.purge_if_owed(&db).await;
        assert_eq!(wal_size(), 0, "still owed, and paid once the reader let go");
    }

    /// `write_alone` runs its statement outside any transaction: SQLite refuses `VACUUM`
    /// inside one.
    #[tokio::test]
    async fn a_statement_written_alone_runs_outside_any_transaction() {
        let db = Db::connect(&testkit::fresh_sqlite_url(), &PoolSettings::PATIENT)
            .await
            .unwrap();
        db.write_alone("VACUUM").await.unwrap();
    }

    /// A retired generation's drop runs under `secure_delete` and empties the WAL after: its
    /// rows are overwritten, not left in the file's free pages, nor as they were in its WAL.
    #[tokio::test]
    async fn a_dropped_generation_leaves_nothing_in_the_file() {
        use crate::models::Projection;
        use crate::schema;
        use crate::table::Indexes;

        const MARKER: &str = "retired-openid-";
        let url = testkit::fresh_sqlite_url();
        let db = Db::connect(&url, &PoolSettings::PATIENT).await.unwrap();
        schema::init(&db, chrono_tz::UTC).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        schema::create_generation(&mut tx, &db, Projection::LoginHistory, 5, Indexes::All)
            .await
            .unwrap();
        sqlx::query(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) \
             INSERT INTO login_history_g5 (position, session_id, user_id, openid, occurred_at, \
             is_new_user) SELECT i, 's' || i, 'u' || i, '{MARKER}' || i, i, 0 FROM n"
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let path = super::filename(&infra::database_url::sqlite_read_models_url(&url)).unwrap();
        let holds_marker = || {
            let wal = format!("{}-wal", path.display());
            [
                std::fs::read(&path).unwrap(),
                std::fs::read(wal).unwrap_or_default(),
            ]
            .iter()
            .any(|bytes| bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()))
        };
        db.dialect.owe_purge();
        db.dialect.purge_if_owed(&db).await;
        assert!(holds_marker(), "the rows are in the file before the drop");

        let mut tx = db.begin().await.unwrap();
        schema::retire(&mut tx, Projection::LoginHistory, 5)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        schema::drop_retired(&db).await.unwrap();
        assert!(
            !holds_marker(),
            "a dropped generation's rows stay readable in the file"
        );
    }

    /// A read-model transaction may rewrite megabytes of pages that existed before it (a
    /// rebuild's `users` upserts do): the statement's journal outgrows memory and goes to a
    /// file. With SQLite compiled to keep 4 MiB of it in memory, that copy wrote nothing and
    /// the rebuild failed as if the disk were full (BENCHMARKS.md, "Measured and reverted").
    #[tokio::test]
    async fn a_transaction_rewrites_megabytes_of_existing_pages() {
        let db = Db::connect(&testkit::fresh_sqlite_url(), &PoolSettings::PATIENT)
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        for sql in [
            "CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
            // About 7 MB.
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) \
             INSERT INTO filler SELECT i, hex(randomblob(300)) FROM n",
        ] {
            sqlx::query(sql).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        // Not the transaction's first statement (`begin` wrote), so it journals every page.
        sqlx::query("UPDATE filler SET body = body || 'x'")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rewritten: i64 = sqlx::query_scalar("SELECT count(*) FROM filler WHERE body LIKE '%x'")
            .fetch_one(&db.read)
            .await
            .unwrap();
        assert_eq!(rewritten, 12000);
    }

    /// The read models' multi-row inserts end a failing statement without undoing it alone
    /// (`Dialect::insert_into`), so SQLite keeps no statement journal for them: no constraint
    /// check in the statement's program aborts (`HaltIfNull`/`Halt` with P2 = `OE_Abort`),
    /// where the plain `INSERT INTO` has such checks. Only constraint checks are scanned: a
    /// function call in the statement would need the journal too, and these bind only values.
    #[tokio::test]
    async fn multi_row_inserts_keep_no_statement_journal() {
        use sqlx::Row as _;

        /// `OE_Abort` (sqliteInt.h): `EXPLAIN` shows a check's conflict resolution raw in P2.
        const OE_ABORT: i64 = 2;
        let db = Db::connect(&testkit::fresh_sqlite_url(), &PoolSettings::PATIENT)
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        sqlx::query(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, n INTEGER)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let columns = ["id", "code", "n"];
        let aborting = |program: Vec<sqlx::any::AnyRow>| -> Vec<String> {
            program
                .iter()
                .filter(|op| op.get::<String, _>("opcode").starts_with("Halt"))
                .filter(|op| op.get::<i64, _>("p2") == OE_ABORT)
                .map(|op| op.get::<String, _>("opcode"))
                .collect()
        };
        // The control: the plain form has aborting checks, so the scan can see them.
        let plain = crate::db::insert_statement(db.dialect.as_ref(), "t", &columns, 3, "")
            .replacen("INSERT OR FAIL INTO", "INSERT INTO", 1);
        let program = sqlx::query(&format!("EXPLAIN {plain}"))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert!(!aborting(program).is_empty(), "{plain}");
        for suffix in [
            "",
            "ON CONFLICT (code) DO NOTHING",
            "ON CONFLICT DO NOTHING RETURNING id",
        ] {
            let insert = crate::db::insert_statement(db.dialect.as_ref(), "t", &columns, 3, suffix);
            let program = sqlx::query(&format!("EXPLAIN {insert}"))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            assert_eq!(aborting(program), Vec::<String>::new(), "{insert}");
        }
    }

    /// A multi-row insert that fails part-way keeps the rows before the failing one in its
    /// transaction (`OR FAIL`), and none of them once the transaction is dropped: not for the
    /// next writer on the same connection, nor for readers.
    #[tokio::test]
    async fn a_failed_multi_row_insert_leaves_none_of_its_rows() {
        let db = Db::connect(&testkit::fresh_sqlite_url(), &PoolSettings::PATIENT)
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut tx = db.begin().await.unwrap();
        let insert = crate::db::insert_statement(db.dialect.as_ref(), "t", &["id", "body"], 3, "");
        // The third row's key repeats the first's: the first two are in before it fails.
        let failed = sqlx::query(&insert)
            .bind(1_i64)
            .bind("a")
            .bind(2_i64)
            .bind("b")
            .bind(1_i64)
            .bind("c")
            .execute(&mut *tx)
            .await;
        let failed = failed.expect_err("the repeated key fails the statement");
        assert!(
            failed
                .as_database_error()
                .is_some_and(|e| e.is_unique_violation()),
            "{failed}"
        );
        let count = "SELECT count(*) FROM t";
        let kept: i64 = sqlx::query_scalar(count).fetch_one(&mut *tx).await.unwrap();
        assert_eq!(kept, 2, "OR FAIL keeps the rows before the failing one");
        drop(tx);
        // The next transaction on the one writer connection, then a reader.
        let mut next = db.begin().await.unwrap();
        let rows: i64 = sqlx::query_scalar(count)
            .fetch_one(&mut *next)
            .await
            .unwrap();
        assert_eq!(rows, 0);
        drop(next);
        let rows: i64 = sqlx::query_scalar(count).fetch_one(&db.read).await.unwrap();
        assert_eq!(rows, 0);
    }
}
