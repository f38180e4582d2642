//! Open connections per peer (an IPv4 address or an IPv6 /64): one address cannot take every
//! slot under the connection cap. Our own proxies (`IDENTITY_TRUSTED_PROXIES`) are exempt,
//! since every client behind them shares their address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::http::client_ip::TrustedProxies;
use crate::http::rate_limit::ClientKey;

#[derive(Clone)]
pub struct PeerConnections {
    per_peer: usize,
    exempt: TrustedProxies,
    open: Arc<Mutex<HashMap<ClientKey, usize>>>,
}

/// One open connection of a peer; dropping it frees the place.
pub struct PeerSlot {
    key: Option<ClientKey>,
    open: Arc<Mutex<HashMap<ClientKey, usize>>>,
}

impl PeerConnections {
    /// At most `per_peer` open connections per peer; 0 turns the limit off.
    pub fn new(per_peer: usize, exempt: TrustedProxies) -> Self {
        Self {
            per_peer,
            exempt,
            open: Arc::default(),
        }
    }

    /// A place for one more connection of `peer`, or `None` when it has its share already.
    pub fn admit(&self, peer: IpAddr) -> Option<PeerSlot> {
        if self.per_peer == 0 || self.exempt.contains(peer) {
            return Some(PeerSlot {
                key: None,
                open: self.open.clone(),
            });
        }
        let key = ClientKey::from(peer);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.per_peer {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            key: Some(key),
            open: self.open.clone(),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_share_and_our_proxies_are_exempt() {
        let peers = PeerConnections::new(2, TrustedProxies::parse("10.0.0.0/8").expect("ok"));
        let peer: IpAddr = "2001:db8:1:1::1".parse().expect("ip");
        let neighbour: IpAddr = "2001:db8:1:1::2".parse().expect("ip");
        let first = peers.admit(peer).expect("first");
        let _second = peers.admit(neighbour).expect("second, same /64");
        assert!(peers.admit(peer).is_none(), "a third from the same /64");
        drop(first);
        assert!(peers.admit(peer).is_some(), "a place freed");
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let held: Vec<_> = (0..10).map(|_| peers.admit(proxy)).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(PeerConnections::new(0, TrustedProxies::default())
            .admit(peer)
            .is_some());
    }
}
