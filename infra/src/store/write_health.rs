//! Whether the database takes writes, as the store's own writes found: failing once a write
//! failed for want of the database (see `fault`: a full disk, an I/O error, a lost
//! connection), until one succeeds again. Readiness consults it: a database that answers a
//! `SELECT 1` yet refuses every write (SQLite on a full disk; PostgreSQL out of space answers
//! `53100`) serves no login, and an orchestrator should send traffic elsewhere meanwhile.
//!
//! Errors that are the request's (a version conflict, a taken claim) say nothing either way.
//! A write that succeeds clears the failure; so does the probe readiness writes while failing
//! (`SqlStore`'s `writes_work`), so an instance taken out of rotation, and so given no writes,
//! still finds out that space came back.

use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::fault::is_database_failure;

/// Shared by every clone of a store's pools.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteHealth {
    failing: Arc<AtomicBool>,
}

impl WriteHealth {
    /// The last write failed for want of the database, and none succeeded since.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Records a write's outcome: a success clears a failure, an unavailable database sets it.
    pub fn record<T, E: Error + 'static>(&self, outcome: &Result<T, E>) {
        match outcome {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed(e),
        }
    }

    /// Records a failure of a write (or of a read on the write path), if it is the database's.
    pub fn record_failure<T, E: Error + 'static>(&self, outcome: &Result<T, E>) {
        if let Err(e) = outcome {
            self.failed(e);
        }
    }

    fn succeeded(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("writes to the database succeed again");
        }
    }

    fn failed(&self, err: &(dyn Error + 'static)) {
        if is_database_failure(err) && !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %err,
                "writes to the database fail: not ready until one succeeds"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn unavailable() -> Result<(), StoreError> {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        Err(StoreError::Database(sqlx::Error::Io(reset)))
    }

    #[test]
    fn failing_from_an_unavailable_database_until_a_write_succeeds() {
        let health = WriteHealth::default();
        assert!(!health.is_failing());
        health.record(&unavailable());
        assert!(health.clone().is_failing(), "clones share the state");
        health.record_failure(&Ok::<_, StoreError>(()));
        assert!(health.is_failing(), "only a write's success clears it");
        health.record(&Ok::<_, StoreError>(()));
        assert!(!health.is_failing());
    }

    #[test]
    fn the_requests_own_errors_say_nothing() {
        let health = WriteHealth::default();
        health.record(&Err::<(), _>(StoreError::Corrupt("bad row".into())));
        assert!(!health.is_failing());
        // A pool with no connection free in time: a flood of requests, not the database.
        health.record(&Err::<(), _>(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        )));
        assert!(!health.is_failing());
        health.record(&unavailable());
        health.record(&Err::<(), _>(StoreError::Corrupt("bad row".into())));
        assert!(health.is_failing());
    }
}
