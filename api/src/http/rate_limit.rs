//! Per-client limits (GCRA buckets via `governor`, a client being an IPv4 address or an IPv6
//! /64): logins, and failed authentications.

mod auth_failures;
mod clients;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::Quota;

pub use auth_failures::{AuthAttempt, AuthFailureLimit};
pub use clients::ClientKey;
use clients::ClientLimiter;

/// Clients each limit tracks one by one: with ~25 bytes a bucket, a few MiB however many
/// addresses call (a full table counts newcomers in shared buckets; see `clients::place`).
pub const MAX_TRACKED_CLIENTS: usize = 250_000;

/// A per-client bucket that refills `per_minute` a minute, with a burst of the same size.
struct PerClient {
    limiter: ClientLimiter,
    capacity: usize,
    clock: DefaultClock,
    /// When the table was last swept because it was full (ms since `epoch`).
    last_sweep_ms: AtomicU64,
    epoch: Instant,
}

/// A full table is swept at most this often between the janitor's rounds.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

impl PerClient {
    fn new(per_minute: u32, capacity: usize) -> Option<Self> {
        NonZeroU32::new(per_minute).map(|n| Self {
            limiter: clients::limiter(Quota::per_minute(n), capacity),
            capacity,
            clock: DefaultClock::default(),
            last_sweep_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.limiter.len() >= self.capacity {
            self.sweep_if_due();
        }
        self.limiter
            .check_key(&ClientKey::from(ip))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// A full table drops the buckets that are full again, at most once a second.
    fn sweep_if_due(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= FULL_SWEEP_EVERY.as_millis() as u64
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
        }
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// Logins per client.
pub struct LoginRateLimit(Option<PerClient>);

impl LoginRateLimit {
    /// `per_minute` logins per client, with a burst of the same size; 0 disables the limit.
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED_CLIENTS)
    }

    pub fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        Self(PerClient::new(per_minute, capacity))
    }

    /// `Err(wait)` when this client must wait before its next login.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.0.as_ref().map_or(Ok(()), |limit| limit.check(ip))
    }

    /// Forgets clients whose bucket is full again, so memory follows recent clients.
    pub fn forget_idle(&self) {
        if let Some(limit) = &self.0 {
            limit.forget_idle();
        }
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.0.as_ref().map_or(0, PerClient::tracked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

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

    #[test]
    fn one_ipv6_64_is_one_client() {
        let limit = LoginRateLimit::per_minute(2);
        // An attacker rotating through the addresses of their /64 gains nothing.
        for n in 1..=2u128 {
            assert!(limit
                .check(IpAddr::V6(Ipv6Addr::from_bits(0x2001_0db8 << 96 | n)))
                .is_ok());
        }
        let next = IpAddr::V6(Ipv6Addr::from_bits(0x2001_0db8 << 96 | 0xffff));
        assert!(limit.check(next).is_err());
    }

    #[test]
    fn memory_is_bounded_by_the_table() {
        // 100,000 distinct clients (the measure) through a table of 10,000: the first
        // 10,000 get buckets of their own, the rest share their network's (a /16, a /48) or
        // the overflow bucket, so the table stays within its bound and newcomers stay limited.
        let limit = LoginRateLimit::with_capacity(120, 10_000);
        let mut refused = 0;
        for n in 0..100_000u32 {
            let ip = if n & 1 == 0 {
                IpAddr::V4((n << 8).into())
            } else {
                IpAddr::V6(Ipv6Addr::from_bits(u128::from(n) << 80))
            };
            refused += usize::from(limit.check(ip).is_err());
        }
        assert!(
            limit.tracked() <= 10_000 + 10_000 / 8 + 1,
            "{}",
            limit.tracked()
        );
        assert!(refused > 0, "a full table still limits newcomers");
        assert_eq!(
            LoginRateLimit::per_minute(120).0.map(|l| l.capacity),
            Some(MAX_TRACKED_CLIENTS)
        );
    }
}
