//! The connection loop: hyper's HTTP/1.1 server with the limits `axum::serve` does not offer.
//!
//! - **Header read timeout**: a connection that has not sent a complete request head within
//!   `header_read_timeout` (counted from the connection's start, and again from the end of each
//!   response while it idles in keep-alive) is closed. Without it one slow client holds a
//!   connection, a task and a file descriptor forever.
//! - **Connection cap**: at most `max_connections` are open; beyond that the loop stops
//!   accepting and further clients wait in the kernel's listen queue until one closes. The cap
//!   is fitted under the open-files limit at start (`fd_limit`).
//!
//! - **Per-peer cap**: one address (an IPv6 /64) holds at most `max_connections_per_ip` of
//!   them; a connection over it is closed at once. Our own proxies are exempt (`per_peer`).
//! - **Write stall timeout**: a connection whose writes make no progress for `write_timeout`
//!   (a client that stopped reading) is closed (`write_stall`).
//! - **Shutdown deadline**: on shutdown, open connections get `shutdown_grace` to finish;
//!   whatever is left then is dropped.
//!
//! The request timeout is a layer of the router (`http::timeout`), since it answers.

pub mod fd_limit;
mod per_peer;
mod write_stall;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};
use write_stall::WriteStallTimeout;

use crate::http::client_ip::TrustedProxies;
pub use per_peer::PeerConnections;

#[derive(Debug, Clone)]
pub struct EdgeLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Open connections per peer address (IPv6: per /64); 0: no limit.
    pub max_connections_per_ip: usize,
    /// Peers exempt from `max_connections_per_ip`: our own proxies.
    pub trusted_proxies: TrustedProxies,
    pub write_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish
/// for at most `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = pin!(shutdown);
    // Owns every connection's task, so the ones still open at the shutdown deadline end with it.
    let mut connections = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    let peers = PeerConnections::new(limits.max_connections_per_ip, limits.trusted_proxies);
    loop {
        // Reap finished connections as we go, so the set stays as small as what is open.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = open.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_errors.pause_after(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(peer_slot) = peers.admit(peer.ip()) else {
            // Over its share: closed at once, the global slot back for others.
            tracing::debug!(peer = %peer.ip(), "too many connections from one address");
            drop(stream);
            continue;
        };
        let service = match make_service.call(peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let service = service.map_request(|req: Request<Incoming>| req.map(Body::new));
        let connection = graceful.watch(http.serve_connection(
            TokioIo::new(WriteStallTimeout::new(stream, limits.write_timeout)),
            TowerToHyperService::new(service),
        ));
        connections.spawn(async move {
            if let Err(error) = connection.await {
                // Timeouts and clients going away: routine, not worth more than debug.
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(peer_slot);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            grace = ?limits.shutdown_grace,
            "connections still open at the shutdown deadline; closing them"
        );
    }
    connections.shutdown().await;
}

/// Failed accepts, logged at most once every `LOG_EVERY` with the count since the last line.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    const LOG_EVERY: Duration = Duration::from_secs(10);

    /// A failed accept: the client already left (go on at once), or the process is out of file
    /// descriptors or memory (wait a little rather than spin, and say so now and then).
    async fn pause_after(&mut self, error: &std::io::Error) {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionRefused | ConnectionReset
        ) {
            return;
        }
        if self.should_log(Instant::now()) {
            tracing::error!(%error, suppressed = self.suppressed,
                "accepting a connection failed; pausing");
            self.suppressed = 0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fn should_log(&mut self, now: Instant) -> bool {
        match self.last_logged {
            Some(last) if now.duration_since(last) < Self::LOG_EVERY => {
                self.suppressed += 1;
                false
            }
            _ => {
                self.last_logged = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn accept_errors_are_logged_once_every_ten_seconds() {
        let mut errors = AcceptErrors::default();
        let start = Instant::now();
        let logged = (0..1_000)
            .filter(|n| errors.should_log(start + Duration::from_millis(100) * *n))
            .count();
        // 100 s of EMFILE, one every 100 ms: ten lines, not a thousand.
        assert_eq!(logged, 10);
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_past_its_grace_for_a_stuck_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = Router::new().route("/big", get(|| async { vec![b'x'; 1 << 20] }));
        let limits = EdgeLimits {
            header_read_timeout: Duration::from_secs(60),
            max_connections: 8,
            max_connections_per_ip: 0,
            trusted_proxies: TrustedProxies::default(),
            write_timeout: Duration::from_secs(3600),
            shutdown_grace: Duration::from_millis(500),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        // A client that asks for a large body and never reads it.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
        let mut stuck = socket.connect(addr).await.expect("connect");
        stuck
            .write_all(&b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(8))
            .await
            .expect("request");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve returns once the grace is over")
            .expect("serve");
    }
}
