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
        if matches!(result, Ok(frames) if frames > MAX_WAL_FRAMES) {
            result = checkpoint(c, "RESTART").await;
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

/// Runs a checkpoint; returns the frames the WAL held.
async fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> Result<i64, sqlx::Error> {
    // (busy, frames in the WAL, frames copied into the database)
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(conn)
        .await?;
    let frames: i64 = row.try_get(1)?;
    tracing::trace!(
        mode,
        frames,
        checkpointed = row.try_get::<i64, _>(2)?,
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
