//! The process's turn at a SQLite database's single write lock.
//!
//! Writers of one database file in this process (in the store's file: the appends and
//! side-table writes, the WAL checkpointer's `RESTART`s; in the read models' file: the
//! projection runner's and rebuild's transactions) take the turn around their write
//! transactions, so they queue here rather than sleep in SQLite's busy handler (which polls
//! in 1, 2, 5, 10 … ms steps). The turn belongs to the file, not to a pool: whoever opens the
//! file in this process gets the same one.
//!
//! A writer that waited SQLite's whole busy wait for a lock another process holds (a CLI command
//! writing, a backup) says so (`HeldTurn::observe`), and every writer that queued before
//! that moment fails with its error instead of waiting as long again for the same answer, so
//! a request's 503 comes within about one busy wait however many queued (see `WriteTurn`).

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::store::fault::is_sqlite_busy;
use crate::store::StoreError;

/// The turns of the files open in this process (a turn lives as long as someone holds it).
static TURNS: LazyLock<std::sync::Mutex<HashMap<PathBuf, Weak<WriteTurn>>>> =
    LazyLock::new(Default::default);

/// One file's write turn, and the count of writers that found the file busy in it.
///
/// A writer notes the count when it queues (`ticket`); once the count has moved, a writer
/// ahead of it found the file busy, and it fails with that writer's error without trying
/// (`take`, `behind_busy`). Only BUSY counts: a full disk may refuse one large write and take
/// a small one, and an error of the request's own (a conflict) says nothing of the file.
#[derive(Debug, Default)]
pub struct WriteTurn {
    lock: Arc<Mutex<()>>,
    busy: AtomicU64,
    /// The last BUSY error's text, for those it fails.
    last_busy: std::sync::Mutex<String>,
}

/// The turn, held until dropped.
#[derive(Debug)]
pub struct HeldTurn {
    _held: OwnedMutexGuard<()>,
    of: Arc<WriteTurn>,
}

impl WriteTurn {
    /// What a writer notes when it queues, for `behind_busy`.
    pub fn ticket(&self) -> u64 {
        self.busy.load(Ordering::Acquire)
    }

    /// The error of a writer that queued with `ticket`, if a writer found the file busy since.
    pub fn behind_busy(&self, ticket: u64) -> Option<StoreError> {
        (self.ticket() != ticket).then(|| {
            let last = self
                .last_busy
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            StoreError::QueuedBehindBusy(last.clone())
        })
    }

    /// Waits for the turn; fails as `behind_busy` says once it comes.
    pub async fn take(self: &Arc<Self>) -> Result<HeldTurn, StoreError> {
        let ticket = self.ticket();
        let turn = self.wait().await;
        match self.behind_busy(ticket) {
            Some(busy) => Err(busy),
            None => Ok(turn),
        }
    }

    /// Waits for the turn whatever happened ahead (the checkpointer, which tries again by
    /// itself, and the append writer, which checks each append's ticket).
    pub(crate) async fn wait(self: &Arc<Self>) -> HeldTurn {
        HeldTurn {
            _held: Arc::clone(&self.lock).lock_owned().await,
            of: Arc::clone(self),
        }
    }
}

impl HeldTurn {
    /// Records what a write in this turn came to: BUSY fails the writers queued meanwhile (see
    /// `WriteTurn`).
    pub fn observe<T, E: Error + 'static>(&self, outcome: &Result<T, E>) {
        if let Err(e) = outcome {
            if is_sqlite_busy(e) {
                *self
                    .of
                    .last_busy
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = e.to_string();
                self.of.busy.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// The write turn of the database file at `path` (which should exist: it names the file by its
/// canonical path).
pub fn write_turn(path: &Path) -> Arc<WriteTurn> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut turns = TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    turns.retain(|_, turn| turn.strong_count() > 0);
    if let Some(turn) = turns.get(&key).and_then(Weak::upgrade) {
        return turn;
    }
    let turn = Arc::new(WriteTurn::default());
    turns.insert(key, Arc::downgrade(&turn));
    turn
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::Connection as _;

    use super::*;

    #[test]
    fn one_file_one_turn() {
        let dir = std::env::temp_dir().join(format!("turn-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.db"), dir.join("b.db"));
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        let turn = write_turn(&a);
        assert!(Arc::ptr_eq(&turn, &write_turn(&dir.join(".").join("a.db"))));
        assert!(!Arc::ptr_eq(&turn, &write_turn(&b)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// SQLite's BUSY, as a statement that waited out the busy timeout reports it.
    async fn busy() -> Result<(), StoreError> {
        let dir = std::env::temp_dir().join(format!("turn-busy-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("db").display());
        let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut other)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let refused = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await;
        std::fs::remove_dir_all(dir).unwrap();
        refused.map(drop).map_err(StoreError::from)
    }

    /// Waits until `turn` has someone queued behind its holder.
    async fn queue_behind(
        turn: &Arc<WriteTurn>,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let queued = tokio::spawn({
            let turn = Arc::clone(turn);
            async move { turn.take().await.map(drop) }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        queued
    }

    /// Writers queued when the holder's write found the file busy fail with its error; those
    /// behind a holder whose write failed otherwise, or that queue later, do not.
    #[tokio::test]
    async fn a_busy_file_fails_the_writers_queued_behind_it() {
        let turn = Arc::new(WriteTurn::default());
        let holder = turn.take().await.unwrap();
        let queued = queue_behind(&turn).await;
        holder.observe(&Ok::<_, StoreError>(()));
        holder.observe(&Err::<(), _>(StoreError::Corrupt("not the file's".into())));
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        holder.observe(&Err::<(), _>(StoreError::Database(sqlx::Error::Io(full))));
        drop(holder);
        queued
            .await
            .unwrap()
            .expect("behind writes that failed otherwise");

        let holder = turn.take().await.unwrap();
        let queued = queue_behind(&turn).await;
        let busy = busy().await;
        assert!(busy.is_err(), "the second BEGIN IMMEDIATE was not refused");
        holder.observe(&busy);
        drop(holder);
        let failed = queued.await.unwrap().unwrap_err();
        assert!(failed.is_unavailable(), "{failed}");
        assert!(failed.to_string().contains("locked"), "{failed}");

        turn.take().await.expect("queued after the failure");
    }
}
