//! The process's turn at a SQLite database's single write lock.
//!
//! Writers of one database file in this process (the store's appends and side-table writes,
//! the projection runners' read-model transactions) take the turn around their write
//! transactions, so they queue here rather than sleep in SQLite's busy handler (which polls in
//! 1, 2, 5, 10 … ms steps). The turn belongs to the file, not to a pool: whoever opens the file
//! in this process gets the same one, so the read models need nothing from the store to share
//! it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};

use tokio::sync::Mutex;

/// The turns of the files open in this process (a turn lives as long as someone holds it).
static TURNS: LazyLock<std::sync::Mutex<HashMap<PathBuf, Weak<Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// The write turn of the database file at `path` (which should exist: it names the file by its
/// canonical path).
pub fn write_turn(path: &Path) -> Arc<Mutex<()>> {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut turns = TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    turns.retain(|_, turn| turn.strong_count() > 0);
    if let Some(turn) = turns.get(&key).and_then(Weak::upgrade) {
        return turn;
    }
    let turn = Arc::new(Mutex::new(()));
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
}
