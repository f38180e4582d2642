//! The table of per-client buckets behind every limit: governor's DashMap store, keyed by
//! client (an IPv4 address or an IPv6 /64), with a ceiling on its size.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};

use governor::clock::DefaultClock;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

/// A GCRA limiter per client.
pub type ClientLimiter = RateLimiter<ClientKey, ClientTable, DefaultClock>;

pub fn limiter(quota: Quota, capacity: usize) -> ClientLimiter {
    RateLimiter::new(
        quota,
        ClientTable {
            buckets: DashMapStateStore::default(),
            capacity,
        },
        DefaultClock::default(),
    )
}

/// Who a limit counts against. A subscriber is normally handed a whole IPv6 /64, so keying by
/// the full address would give every caller 2^64 fresh buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Net(u64),
    /// When the table is full: the IPv4 /16 (its upper 16 bits), shared by its clients.
    V4Net16(u16),
    /// When the table is full: the IPv6 /48 (its upper 48 bits), shared by its clients.
    V6Net48(u64),
    /// When even the shared networks have no room: one bucket for every newcomer.
    Overflow,
}

impl ClientKey {
    /// The network this client shares with its neighbours when there is no room for it alone.
    fn coarse(self) -> Self {
        match self {
            Self::V4(v4) => Self::V4Net16((v4.to_bits() >> 16) as u16),
            Self::V6Net(net) => Self::V6Net48(net >> 16),
            shared => shared,
        }
    }
}

/// The bucket `ip` is counted in, for a table holding `len` keys of which `contains` tells, and
/// meant for `capacity` clients: its own while there is room; once full, its /16 or /48, with
/// room for `capacity / 8` of those; beyond that, the one overflow bucket. So a full table still
/// limits newcomers (together) and holds at most `capacity + capacity / 8 + 1` keys.
pub fn place(
    ip: IpAddr,
    contains: impl Fn(&ClientKey) -> bool,
    len: usize,
    capacity: usize,
) -> ClientKey {
    let own = ClientKey::from(ip);
    if len < capacity || contains(&own) {
        return own;
    }
    let shared = own.coarse();
    if len < capacity + capacity / 8 || contains(&shared) {
        return shared;
    }
    ClientKey::Overflow
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6Net((v6.to_bits() >> 64) as u64),
        }
    }
}

/// At most `capacity` clients are tracked one by one. A client arriving when the table is full
/// is counted in the bucket of its /16 or /48, or, when those have no room either, in the one
/// overflow bucket (`place`): a full table still limits newcomers, together, rather than
/// admitting them freely, and holds at most `capacity + capacity / 8 + 1` buckets.
pub struct ClientTable {
    buckets: DashMapStateStore<ClientKey>,
    capacity: usize,
}

impl StateStore for ClientTable {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Keys arrive as clients (`ClientKey::from`); a full table moves newcomers to a
        // shared bucket. Racing inserts may overshoot the bound by a few, never more.
        let key = match key {
            ClientKey::V4(v4) => IpAddr::V4(*v4),
            ClientKey::V6Net(net) => IpAddr::V6((u128::from(*net) << 64).into()),
            shared => return self.buckets.measure_and_replace(shared, f),
        };
        let key = place(
            key,
            |k| self.buckets.contains_key(k),
            self.buckets.len(),
            self.capacity,
        );
        self.buckets.measure_and_replace(&key, f)
    }
}

impl ShrinkableKeyedStateStore<ClientKey> for ClientTable {
    fn retain_recent(&self, drop_below: Nanos) {
        self.buckets.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.buckets);
    }

    fn len(&self) -> usize {
        self.buckets.len()
    }

    fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;
    use std::num::NonZeroU32;

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        assert_ne!(ClientKey::from(a), ClientKey::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(
            ClientKey::from(mapped),
            ClientKey::V4(Ipv4Addr::new(192, 0, 2, 1))
        );
    }

    #[test]
    fn a_full_table_limits_newcomers_in_shared_buckets() {
        let quota = Quota::per_minute(NonZeroU32::new(1).expect("nonzero"));
        let limiter = limiter(quota, 1_000);
        for n in 0..1_000u64 {
            let ip = IpAddr::V6(Ipv6Addr::from_bits(u128::from(n) << 64));
            assert!(limiter.check_key(&ClientKey::from(ip)).is_ok());
        }
        // Full: newcomers share buckets, so most of 100,000 more are refused, and the table
        // stays within its bound.
        let mut passed = 0;
        for n in 0..100_000u64 {
            let ip = IpAddr::V6(Ipv6Addr::from_bits(u128::from(n + 1_000_000) << 64));
            passed += usize::from(limiter.check_key(&ClientKey::from(ip)).is_ok());
        }
        assert!(passed <= 1_000 / 8 + 1, "{passed} newcomers passed");
        assert!(limiter.len() <= 1_000 + 1_000 / 8 + 1, "{}", limiter.len());
        // Neighbours in the same /48 share one bucket; the overflow bucket takes the rest.
        let a = IpAddr::V6("2001:db8:7:1::1".parse().expect("ip"));
        let b = IpAddr::V6("2001:db8:7:2::1".parse().expect("ip"));
        let full = |_: &ClientKey| false;
        assert_eq!(place(a, full, 1_000, 1_000), place(b, full, 1_000, 1_000));
        assert_eq!(place(a, full, 2_000, 1_000), ClientKey::Overflow);
        // Tracked clients keep their limit while the table is full.
        let first = ClientKey::from(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert!(limiter.check_key(&first).is_err());
    }
}
