//! Who is calling: the TCP peer's address, or, when the peer is one of our own proxies
//! (`IDENTITY_TRUSTED_PROXIES`), the address that proxy saw.
//!
//! `X-Forwarded-For` is written left to right: the client may put anything in it, then each
//! proxy appends the address it was connected from. So only entries appended by proxies we run
//! can be believed: walking from the right, every address that is one of ours is a hop, and the
//! first one that is not is the client. The leftmost entry, which the client wrote, is never
//! taken unless every hop after it is ours.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks of our own proxies; empty (the default) trusts no `X-Forwarded-For` at all.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated CIDRs (`10.0.0.0/8`) or single addresses.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_net)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that came from `peer` with these headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        // Several `X-Forwarded-For` lines are one list, in order (RFC 9110 §5.3). Read as
        // bytes: a line the client filled with non-ASCII is still a line our proxy appended
        // to, and dropping it whole would make our proxy the client.
        let hops: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|line| line.as_bytes().split(|byte| *byte == b','))
            .collect();
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            // Garbage (not an address, not even text) where a proxy of ours should have
            // written one: stop at the last hop we can vouch for rather than guess.
            let Some(ip) = std::str::from_utf8(hop).ok().and_then(parse_hop) else {
                return nearest;
            };
            if !self.contains(ip) {
                return ip;
            }
            nearest = ip;
        }
        // Every hop is ours: the request started at one of our proxies.
        nearest
    }
}

fn parse_net(entry: &str) -> Result<IpNet, String> {
    entry
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("trusted_proxies: {entry:?} is neither a CIDR nor an IP address"))
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, or with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's address, as `TrustedProxies::client_ip` decides it; `None` only where no
/// connection is known (a router driven in-process by a test).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// Any state that knows whose `X-Forwarded-For` to believe (the service's `AppState`).
impl<S: AsRef<TrustedProxies> + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self(peer.map(|peer| {
            state.as_ref().client_ip(peer, &parts.headers)
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP")
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(line).expect("header"),
            );
        }
        headers
    }

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).expect("proxies")
    }

    /// The client `ours` sees behind `peer`, given these `X-Forwarded-For` lines.
    fn client(ours: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        ours.client_ip(ip(peer), &forwarded(lines))
    }

    #[test]
    fn no_trusted_proxy_means_the_peer_whatever_the_header_says() {
        let lines = ["198.51.100.1"];
        let none = TrustedProxies::default();
        assert_eq!(client(&none, "203.0.113.9", &lines), ip("203.0.113.9"));
        // A peer that is not one of ours is the client, even when others are trusted.
        let ours = proxies("10.0.0.0/8");
        assert_eq!(client(&ours, "203.0.113.9", &lines), ip("203.0.113.9"));
    }

    #[test]
    fn the_rightmost_address_not_ours_is_the_client() {
        let ours = proxies("10.0.0.0/8, 192.0.2.1");
        // The client wrote the first entry; our two proxies appended the rest.
        let lines = ["1.1.1.1, 203.0.113.50, 10.0.0.2"];
        assert_eq!(client(&ours, "192.0.2.1", &lines), ip("203.0.113.50"));
        // The same list over several header lines.
        let lines = ["1.1.1.1", "203.0.113.50", "10.0.0.2"];
        assert_eq!(client(&ours, "10.9.9.9", &lines), ip("203.0.113.50"));
    }

    #[test]
    fn a_client_cannot_choose_its_address() {
        let ours = proxies("10.0.0.0/8");
        // Spoofing the leftmost entry changes nothing; neither does claiming to be a proxy
        // from outside (the peer decides whether the header is read at all).
        for spoof in ["127.0.0.1", "10.0.0.1, 127.0.0.1", "garbage", ""] {
            let lines = [format!("{spoof}, 203.0.113.50")];
            assert_eq!(client(&ours, "10.0.0.2", &[&lines[0]]), ip("203.0.113.50"));
        }
    }

    #[test]
    fn all_hops_ours_or_garbage_stops_at_the_nearest_hop_we_vouch_for() {
        let ours = proxies("10.0.0.0/8");
        for (lines, expected) in [
            (&["10.0.0.7, 10.0.0.3"][..], "10.0.0.7"),
            (&["203.0.113.50, not-an-ip, 10.0.0.3"], "10.0.0.3"),
            (&[], "10.0.0.2"),
        ] {
            assert_eq!(client(&ours, "10.0.0.2", lines), ip(expected), "{lines:?}");
        }
    }

    #[test]
    fn non_ascii_bytes_spoil_only_their_own_entry() {
        let ours = proxies("10.0.0.0/8");
        let mut headers = HeaderMap::new();
        let line = |bytes: &[u8]| HeaderValue::from_bytes(bytes).expect("obs-text is allowed");
        headers.append("x-forwarded-for", line(b"caf\xe9, 203.0.113.50"));
        assert_eq!(ours.client_ip(ip("10.0.0.2"), &headers), ip("203.0.113.50"));
        // In the middle of the list, it stops the walk at the hop right of it.
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", line(b"203.0.113.50, \xff\xfe, 10.0.0.3"));
        assert_eq!(ours.client_ip(ip("10.0.0.2"), &headers), ip("10.0.0.3"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let ours = proxies("10.0.0.0/8,2001:db8::/32");
        let lines = ["[2001:db8:ffff::1]:443, 203.0.113.50:4711"];
        assert_eq!(client(&ours, "::ffff:10.0.0.2", &lines), ip("203.0.113.50"));
        let lines = ["2001:db9::1, 2001:db8::2"];
        assert_eq!(client(&ours, "10.0.0.2", &lines), ip("2001:db9::1"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/8,nope").is_err());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse(" , ").expect("empty").is_empty());
    }
}
