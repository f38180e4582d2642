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

/// A log reader's side of the signal: mark what a read covers, then wait for more.
pub struct AppendWaiter(Option<watch::Receiver<i64>>);

impl AppendWaiter {
    pub fn new(appended: watch::Receiver<i64>) -> Self {
        Self(Some(appended))
    }

    /// Everything announced so far is covered by the read about to happen.
    pub fn mark_seen(&mut self) {
        if let Some(rx) = self.0.as_mut() {
            rx.borrow_and_update();
        }
    }

    /// Waits for an append. Once the store has dropped the signal it returns false once and
    /// then never again (readers fall back to their poll).
    pub async fn appended(&mut self) -> bool {
        let Some(rx) = self.0.as_mut() else {
            return std::future::pending().await;
        };
        if rx.changed().await.is_ok() {
            return true;
        }
        self.0 = None;
        false
    }
}
