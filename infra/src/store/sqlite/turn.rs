//! The process's turn at a SQLite database's single write lock.
//!
//! Writers of one database file in this process (the store's appends and side-table writes,
//! the projection runners' read-model transactions, the WAL checkpointer's `RESTART`s) take the
//! turn around their write transactions, so they queue here rather than sleep in SQLite's busy
//! handler (which polls in 1, 2, 5, 10 … ms steps). The turn belongs to the file, not to a
//! pool: whoever opens the file in this process gets the same one, so the read models need
//! nothing from the store to share it.
//!
//! A writer that finds the database unavailable (another process held its write lock for the
//! whole busy wait, the disk is full) says so (`Turn::observe`), and every writer queued for
//! the turn at that moment fails with it instead of waiting as long again for the same answer:
//! so a request's 503 comes within about one busy wait, however many queued.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::store::fault::is_database_failure;
use crate::store::StoreError;

/// The turns of the files open in this process (a turn lives as long as someone holds it).
static TURNS: LazyLock<std::sync::Mutex<HashMap<PathBuf, Weak<WriteTurn>>>> =
    LazyLock::new(Default::default);

/// One file's write turn.
#[derive(Debug, Default)]
pub struct WriteTurn {
    lock: Arc<Mutex<()>>,
    /// How many times a holder found the database unavailable.
    failures: AtomicU64,
}

/// The turn, held until dropped.
#[derive(Debug)]
pub struct Turn {
    _held: OwnedMutexGuard<()>,
    of: Arc<WriteTurn>,
}

impl WriteTurn {
    /// Waits for the turn; fails (as the database's unavailability) when a writer ahead found
    /// the database unavailable meanwhile.
    pub async fn take(self: &Arc<Self>) -> Result<Turn, StoreError> {
        let seen = self.failures.load(Ordering::Acquire);
        let turn = self.wait().await;
        if self.failures.load(Ordering::Acquire) != seen {
            return Err(StoreError::SharedWrite {
                message: "a write queued ahead of this one found the database unavailable".into(),
                unavailable: true,
            });
        }
        Ok(turn)
    }

    /// Waits for the turn whatever happened ahead (the checkpointer: it tries again by itself).
    pub async fn wait(self: &Arc<Self>) -> Turn {
        Turn {
            _held: Arc::clone(&self.lock).lock_owned().await,
            of: Arc::clone(self),
        }
    }
}

impl Turn {
    /// Records what a write in this turn came to: if the database failed it, the writers
    /// queued meanwhile fail too (see the module).
    pub fn observe<T, E: Error + 'static>(&self, outcome: &Result<T, E>) {
        if matches!(outcome, Err(e) if is_database_failure(e)) {
            self.of.failures.fetch_add(1, Ordering::AcqRel);
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

    fn unavailable() -> Result<(), StoreError> {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        Err(StoreError::Database(sqlx::Error::Io(reset)))
    }

    /// Writers queued when the holder's write found the database unavailable fail with it;
    /// those that queue after it, or behind a holder whose write succeeded, do not.
    #[tokio::test]
    async fn a_failure_fails_the_writers_queued_behind_it() {
        let turn = Arc::new(WriteTurn::default());
        let holder = turn.take().await.unwrap();
        let queued = tokio::spawn({
            let turn = Arc::clone(&turn);
            async move { turn.take().await.map(drop) }
        });
        tokio::task::yield_now().await;
        holder.observe(&Ok::<_, StoreError>(()));
        holder.observe(&Err::<(), _>(StoreError::Corrupt(
            "not the database's".into(),
        )));
        holder.observe(&unavailable());
        drop(holder);
        let failed = queued.await.unwrap().unwrap_err();
        assert!(failed.is_unavailable(), "{failed}");

        let holder = turn.take().await.expect("queued after the failure");
        let queued = tokio::spawn({
            let turn = Arc::clone(&turn);
            async move { turn.take().await.map(drop) }
        });
        tokio::task::yield_now().await;
        holder.observe(&Ok::<_, StoreError>(()));
        drop(holder);
        queued
            .await
            .unwrap()
            .expect("behind a write that succeeded");
    }
}
