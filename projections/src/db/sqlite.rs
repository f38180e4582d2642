//! The read models on SQLite: one instance, one writer. All read-model writes queue on one
//! connection and in the process's write turn, which the event store's appends take too
//! (`infra::store::sqlite_write_turn`); a write transaction holds the database's write lock
//! from its first statement, so it needs no lock of its own.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, Executor};

use infra::sql::PoolSettings;
use infra::store::SqliteWriteTurn;

use super::{Begun, Db, Dialect};
use crate::error::ProjectionError;

/// Opens the read models' pools on the store's file. A statement waits `settings.acquire_timeout`
/// at most for a lock another process holds, and a query as long for a read connection, as the
/// store's do.
pub(super) async fn connect(url: &str, settings: &PoolSettings) -> Result<Db, ProjectionError> {
    let busy_timeout = format!(
        "PRAGMA busy_timeout = {}",
        settings.acquire_timeout.as_millis()
    );
    // Create the file if missing, as the store does.
    let url = if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let options = |writer: bool| {
        let busy_timeout = busy_timeout.clone();
        infra::sql::checked_pool(AnyPoolOptions::new()).after_connect(move |conn, _| {
            let busy_timeout = busy_timeout.clone();
            Box::pin(async move {
                conn.execute(busy_timeout.as_str()).await?;
                // Safe in WAL mode (a crash may lose the last commits, never corrupt), and
                // it spares an fsync per projection batch.
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                // The event store's checkpointer copies the WAL into the database, beside
                // the writers: a checkpoint inside a projection's commit would hold the
                // write turn that appends wait for.
                conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
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
                    // temporary files stay on disk (`temp_store`): an old generation's
                    // `DROP TABLE` journals every page of the table.
                    let spill = format!(
                        "PRAGMA cache_spill = {}",
                        infra::store::SQLITE_WRITER_SPILL_PAGES
                    );
                    conn.execute(spill.as_str()).await?;
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
    // Persistent, and a no-op when the store already set it.
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&write)
        .await?;
    // Before any write transaction: `begin`'s first statement writes to it. (One instance on
    // SQLite: no race to create it.)
    crate::checkpoint::create_table(&mut *write.acquire().await?, "INTEGER").await?;
    let read = options(false)
        .max_connections(4)
        .acquire_timeout(settings.acquire_timeout)
        .connect(&url)
        .await?;
    let path = SqliteConnectOptions::from_str(&url)?
        .get_filename()
        .to_path_buf();
    Ok(Db {
        dialect: Arc::new(Sqlite {
            turn: infra::store::sqlite_write_turn(&path),
        }),
        write,
        read,
        // One process owns the file: no connection to lose, nothing to distrust.
        liveness: Default::default(),
    })
}

#[derive(Debug)]
struct Sqlite {
    turn: Arc<SqliteWriteTurn>,
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

    /// Queues for the write turn behind the store's appends instead of meeting them in
    /// SQLite's busy handler, then takes the write lock at once, with a write as the first
    /// statement, so nothing the transaction reads can be stale by the time it writes (a
    /// deferred transaction that reads first may fail to upgrade).
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

    /// None: without statistics SQLite's planner prefers an index anyway, and `ANALYZE` reads
    /// every index of the table whole.
    fn analyze(&self, _table: &str) -> Option<String> {
        None
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

    /// A read-model transaction may rewrite megabytes of pages that existed before it (a
    /// rebuild's batches do): the statement's journal outgrows memory and goes to a file. With
    /// SQLite compiled to keep 4 MiB of it in memory, that copy wrote nothing and the rebuild
    /// failed as if the disk were full (BENCHMARKS.md, "Measured and reverted").
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
}
