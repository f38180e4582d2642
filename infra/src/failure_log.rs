//! Warnings of a background task that retries often (the WAL checkpointer: ten times a second),
//! rate-limited: while it keeps failing (whatever the error), one warning at the first failure, then at
//! most one a minute with how many were left out, and one info line when it works again. A
//! full disk for an hour is some 60 lines, not 36,000.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// At most one warning this often while failures go on.
const EVERY: Duration = Duration::from_secs(60);

/// The failures of one repeated task (named by `what` in its lines).
#[derive(Debug)]
pub struct FailureLog {
    what: &'static str,
    failing: Option<Failing>,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    warned_at: Instant,
    /// Failures since the last warning, not logged.
    suppressed: u64,
    /// Failures since the first.
    total: u64,
}

/// What [`FailureLog`] decided to log (returned for tests).
#[derive(Debug, PartialEq, Eq)]
pub enum Logged {
    /// The first failure, or the first for a minute: warned, with the failures left out.
    Warned { suppressed: u64 },
    /// Counted, not logged.
    Suppressed,
    /// The task works again after `failures` failures: one info line.
    Recovered { failures: u64 },
    /// It worked, as before.
    Quiet,
}

impl FailureLog {
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            failing: None,
        }
    }

    /// A failure at `now`.
    pub fn failed(&mut self, error: &dyn Display, now: Instant) -> Logged {
        let what = self.what;
        let Some(failing) = &mut self.failing else {
            tracing::warn!(%error, "{what} failed (while it keeps failing: one line a minute)");
            self.failing = Some(Failing {
                since: now,
                warned_at: now,
                suppressed: 0,
                total: 1,
            });
            return Logged::Warned { suppressed: 0 };
        };
        failing.total += 1;
        if now.duration_since(failing.warned_at) < EVERY {
            failing.suppressed += 1;
            return Logged::Suppressed;
        }
        let suppressed = std::mem::take(&mut failing.suppressed);
        failing.warned_at = now;
        tracing::warn!(
            %error,
            suppressed,
            failing_for_secs = now.duration_since(failing.since).as_secs(),
            "{what} still fails"
        );
        Logged::Warned { suppressed }
    }

    /// A success at `now`.
    pub fn succeeded(&mut self, now: Instant) -> Logged {
        let what = self.what;
        let Some(failing) = self.failing.take() else {
            return Logged::Quiet;
        };
        tracing::info!(
            failures = failing.total,
            failed_for_secs = now.duration_since(failing.since).as_secs(),
            "{what} works again"
        );
        Logged::Recovered {
            failures: failing.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_then_one_a_minute_then_the_recovery() {
        let mut log = FailureLog::new("the test task");
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(log.succeeded(at(0)), Logged::Quiet);
        assert_eq!(log.failed(&"full", at(0)), Logged::Warned { suppressed: 0 });
        for ms in (100..60_000).step_by(100) {
            assert_eq!(log.failed(&"full", at(ms)), Logged::Suppressed);
        }
        assert_eq!(
            log.failed(&"full", at(60_000)),
            Logged::Warned { suppressed: 599 }
        );
        assert_eq!(log.failed(&"full", at(60_100)), Logged::Suppressed);
        assert_eq!(
            log.succeeded(at(60_200)),
            Logged::Recovered { failures: 602 }
        );
        assert_eq!(log.succeeded(at(60_300)), Logged::Quiet);
        // A new run of failures warns at once again.
        assert_eq!(
            log.failed(&"full", at(60_400)),
            Logged::Warned { suppressed: 0 }
        );
    }
}
