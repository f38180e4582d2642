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

/// At most `capacity` clients are tracked. A client arriving when the table is full is judged
/// as a newcomer (a fresh bucket always admits one request) and not remembered: someone holding
/// that many addresses is not slowed by per-address limits anyway, and a full table must not
/// turn away honest newcomers nor grow without bound.
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
        if self.buckets.len() >= self.capacity && !self.buckets.contains_key(key) {
            return f(None).map(|(outcome, _)| outcome);
        }
        self.buckets.measure_and_replace(key, f)
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
    fn the_table_never_holds_more_than_its_capacity() {
        let quota = Quota::per_minute(NonZeroU32::new(1).expect("nonzero"));
        let limiter = limiter(quota, 1_000);
        for n in 0..5_000u64 {
            let ip = IpAddr::V6(Ipv6Addr::from_bits(u128::from(n) << 64));
            assert!(
                limiter.check_key(&ClientKey::from(ip)).is_ok(),
                "newcomers pass"
            );
        }
        assert_eq!(limiter.len(), 1_000);
        // Tracked clients keep their limit while the table is full.
        let first = ClientKey::from(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert!(limiter.check_key(&first).is_err());
    }
}
