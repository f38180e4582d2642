//! Per-client-IP login rate limit (a GCRA bucket per address, via `governor`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginRateLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl LoginRateLimit {
    /// `per_minute` logins per IP, with a burst of the same size; 0 disables the limit.
    pub fn per_minute(per_minute: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` when this IP must wait before its next login.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(limiter) => limiter
                .check_key(&ip)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Forgets addresses whose bucket is full again, so memory stays bounded by recent clients.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_waits() {
        let limit = LoginRateLimit::per_minute(3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(limit.check(ip).is_ok());
        }
        let wait = limit.check(ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20));
        assert!(
            limit.check([10, 0, 0, 2].into()).is_ok(),
            "other clients are not affected"
        );
    }

    #[test]
    fn zero_disables() {
        let limit = LoginRateLimit::per_minute(0);
        for _ in 0..1000 {
            assert!(limit.check([10, 0, 0, 1].into()).is_ok());
        }
    }
}
