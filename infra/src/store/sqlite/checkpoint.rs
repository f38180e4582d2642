//! WAL checkpoints off the write path.
//!
//! By default SQLite checkpoints inside the commit that grows the WAL past 1000 pages: that
//! commit copies the WAL into the database file and syncs that too before it returns. On the store's one writer, every append queued
//! behind that commit waits for it: the slowest logins under load were those. So writers do
//! not checkpoint (`wal_autocheckpoint = 0` on the store's and the read models' write
//! connections), and this task does, on its own connection, in `PASSIVE` mode: it copies what
//! no reader still needs and never holds up a writer.
//!
//! SQLite starts the WAL over only when a writer begins after a checkpoint that copied all of
//! it. Under steady writes (tens of MB of WAL a second under login load: each commit writes
//! every page it touched) a passive checkpoint is rarely complete, so once the WAL passes
//! `MAX_WAL_FRAMES` the checkpointer takes a `RESTART` checkpoint: it waits for the writer in
//! hand and holds the next one back while it copies the little the passive passes left, so
//! the WAL starts over. That is the one pause writers see, a few times a second at most
//! instead of inside every commit that crosses 1000 pages. (Measured with `bench`: the
//! single-user login p99 halved; 8 and 32 users 10–20 % better.) The store's writer's
//! `journal_size_limit` then trims the file.
//!
//! A `RESTART` waits for the readers still on the WAL while it holds the writer back, so it
//! waits briefly (`RESTART_PATIENCE`) and otherwise gives up until the next pass. With the
//! connection's usual busy timeout (5 s), a 6-minute `bench` soak at 864 logins/s spent 31 %
//! of its time in `RESTART`s, the longest 5.4 s: the login p99 rose to 450 ms, and the
//! resident set with the appends queued meanwhile. With 50 ms (three such soaks): 16 % of the
//! time, the longest 124–146 ms, a third of them gave up, the WAL grew to 210 MB at most
//! before it started over. Only a WAL grown past `PATIENT_PAST_FRAMES` (readers that never
//! let go) makes a `RESTART` wait as long as the store's busy timeout.

use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::{Connection, Row};

use crate::failure_log::FailureLog;
use crate::store::StoreError;
use tokio::sync::oneshot;

/// How often. Under login load the WAL grows by tens of MB a second (each commit writes every
/// page it touched), so passes are frequent and each copies little.
const INTERVAL: Duration = Duration::from_millis(100);

/// WAL frames (pages: 4 KiB by default) past which writers are held back for a checkpoint.
const MAX_WAL_FRAMES: i64 = 4096;

/// How long a `RESTART` waits for the writer in hand and for readers still on the WAL.
const RESTART_PATIENCE: Duration = Duration::from_millis(50);

/// A WAL this large (1 GiB of 4 KiB pages) is started over however long that takes: the
/// readers in the way would otherwise keep it growing with every append.
const PATIENT_PAST_FRAMES: i64 = 262_144;

/// The wait of a `RESTART` past `PATIENT_PAST_FRAMES`.
const LONG_PATIENCE: Duration = Duration::from_secs(5);

/// What the store's writer trims the WAL file to when it starts it over (`journal_size_limit`).
pub(crate) const WAL_SIZE_LIMIT: &str = "67108864";

/// Checkpoints every `INTERVAL` until `stop` is dropped or sent. Failures (a full disk fails
/// every pass) are warned about at most once a minute (see `FailureLog`).
pub(super) async fn run(options: SqliteConnectOptions, mut stop: oneshot::Receiver<()>) {
    let mut conn: Option<SqliteConnection> = None;
    let mut failures = FailureLog::new("the WAL checkpoint");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        let c = match &mut conn {
            Some(c) => c,
            None => match SqliteConnection::connect_with(&options).await {
                Ok(opened) => conn.insert(opened),
                Err(e) => {
                    failures.failed(&format!("cannot connect: {e}"), Instant::now());
                    continue;
                }
            },
        };
        let mut result = checkpoint(c, "PASSIVE").await;
        if let Ok(frames) = result {
            if frames > MAX_WAL_FRAMES {
                result = restart(c, frames).await;
            }
        }
        match result {
            Ok(_) => {
                failures.succeeded(Instant::now());
            }
            Err(e) => {
                failures.failed(&e, Instant::now());
                conn = None;
            }
        }
    }
    if let Some(conn) = conn {
        let _ = conn.close().await;
    }
}

/// A `RESTART` checkpoint of a WAL of `frames`, waiting as long as the module says; returns
/// the frames the WAL held.
async fn restart(conn: &mut SqliteConnection, frames: i64) -> Result<i64, sqlx::Error> {
    let patience = if frames > PATIENT_PAST_FRAMES {
        LONG_PATIENCE
    } else {
        RESTART_PATIENCE
    };
    // The busy handler is what waits; this connection runs checkpoints only.
    sqlx::query(&format!("PRAGMA busy_timeout = {}", patience.as_millis()))
        .execute(&mut *conn)
        .await?;
    checkpoint(conn, "RESTART").await
}

/// Runs a checkpoint; returns the frames the WAL held.
async fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> Result<i64, sqlx::Error> {
    let started = Instant::now();
    // (busy, frames in the WAL, frames copied into the database)
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(conn)
        .await?;
    let frames: i64 = row.try_get(1)?;
    tracing::trace!(
        mode,
        busy = row.try_get::<i64, _>(0)?,
        frames,
        checkpointed = row.try_get::<i64, _>(2)?,
        took_us = started.elapsed().as_micros() as u64,
        "WAL checkpoint"
    );
    Ok(frames)
}

/// Copies the whole WAL into the database and truncates it to zero bytes, so the pages it held
/// (rows as they were before a delete) are gone from the files. Waits for readers that still
/// need older frames (a `TRUNCATE` checkpoint is busy while they read), a few times, briefly.
pub(super) async fn truncate(pool: &SqlitePool) -> Result<(), StoreError> {
    for _ in 0..50 {
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(pool)
            .await?;
        if row.try_get::<i64, _>(0)? == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The next truncation (the next erasure, the next start) finishes the job.
    tracing::warn!("the WAL could not be truncated after an erasure: readers kept it busy");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use sqlx::sqlite::SqliteJournalMode;

    use super::*;

    /// A reader keeps its snapshot of the WAL; a `RESTART` gives up after `RESTART_PATIENCE`
    /// (holding the writer back that long only), not after the connection's busy timeout.
    #[tokio::test]
    async fn a_restart_gives_up_soon_on_a_reader_that_keeps_the_wal() {
        let dir = std::env::temp_dir().join(format!("checkpoint-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = SqliteConnectOptions::from_str(&format!(
            "sqlite://{}?mode=rwc",
            dir.join("db").display()
        ))
        .unwrap()
        .journal_mode(SqliteJournalMode::Wal)
        .pragma("wal_autocheckpoint", "0")
        // The store's: what the checkpointer's connection had before.
        .busy_timeout(LONG_PATIENCE);
        let mut writer = SqliteConnection::connect_with(&options).await.unwrap();
        let mut reader = SqliteConnection::connect_with(&options).await.unwrap();
        let mut checkpointer = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY, b BLOB)")
            .execute(&mut writer)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        assert_eq!(rows, 0);
        // Frames the reader's snapshot predates: the WAL cannot start over under it.
        sqlx::query(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 4000) \
             INSERT INTO t SELECT n, randomblob(1000) FROM s",
        )
        .execute(&mut writer)
        .await
        .unwrap();

        let started = Instant::now();
        restart(&mut checkpointer, MAX_WAL_FRAMES).await.unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "the RESTART waited {took:?}");
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut checkpointer)
            .await
            .unwrap();
        assert!(
            row.get::<i64, _>(1) > 0,
            "the WAL started over under a reader"
        );

        sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
