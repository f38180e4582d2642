//! The "events were appended" wake-up that log readers (projection runners, the live event
//! stream) wait on instead of polling tightly.
//!
//! It only wakes: a reader still reads the log to learn what is new, so a missed or spurious
//! wake-up costs a poll, never an event. Readers keep a slow poll as the fallback.

use std::sync::Arc;

use tokio::sync::watch;

/// Holds the highest position known to be committed (by this process, or announced by another
/// instance). Every bump wakes every receiver, even when the value does not grow: on
/// PostgreSQL, an event with a lower position may commit after a higher one.
#[derive(Clone)]
pub(crate) struct AppendSignal {
    tx: Arc<watch::Sender<i64>>,
}

impl AppendSignal {
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(0)),
        }
    }

    pub fn bump(&self, position: i64) {
        self.tx.send_modify(|known| *known = (*known).max(position));
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.tx.subscribe()
    }
}
