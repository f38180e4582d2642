//! Doubling pauses, shared by the loops that follow the event log (the NATS relay, the
//! projection runners): how long to wait after a look that found nothing, and after failures.

use std::time::Duration;

/// A pause that starts at `first` and doubles, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The pause to take now; the next one will be twice as long, up to `max`.
    pub fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(self.max);
        pause
    }

    /// Start again from `first` (something happened).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The pause after `failures` failures in a row (1 or more): what `pause` gives the
    /// `failures`-th time, without keeping state beside the failure count a loop reports.
    pub fn after(&self, failures: u32) -> Duration {
        (self.first * 2u32.saturating_pow(failures.clamp(1, 10) - 1)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        let taken: Vec<_> = (0..4).map(|_| b.pause().as_millis()).collect();
        assert_eq!(taken, [10, 20, 35, 35]);
        b.reset();
        assert_eq!(b.pause(), Duration::from_millis(10));
    }

    #[test]
    fn after_failures_matches_the_pauses_taken() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut fresh = b;
        for failures in 1..=12 {
            assert_eq!(
                b.after(failures),
                fresh.pause(),
                "after {failures} failures"
            );
        }
        assert_eq!(b.after(u32::MAX), Duration::from_secs(5));
    }
}
