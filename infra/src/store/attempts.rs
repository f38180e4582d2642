//! Attempt counters: how often a subject tried something risky within a fixed window, kept in
//! the database so a cap holds across every instance sharing it.

use async_trait::async_trait;

use super::StoreError;

/// Counts per subject in fixed windows (a window is named by its start, in Unix seconds).
/// Rows of ended windows are forgotten as new ones are counted, so the table holds at most
/// one row per subject active in the current window.
#[async_trait]
pub trait AttemptCounter: Send + Sync {
    /// Counts one attempt of `subject` in `window` (a row of an older window starts again
    /// from one) and returns the count, this attempt included.
    async fn count_attempt(&self, subject: &str, window: i64) -> Result<u32, StoreError>;

    /// Takes back one attempt counted in `window` (it turned out not to count, e.g. it
    /// succeeded). Nothing happens when the row has moved on to another window.
    async fn uncount_attempt(&self, subject: &str, window: i64) -> Result<(), StoreError>;
}
