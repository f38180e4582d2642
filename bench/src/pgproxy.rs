//! A counting TCP proxy between the service and PostgreSQL, for `--only pg-budget`: it copies
//! bytes both ways untouched and reads the frontend (client → server) protocol messages as
//! they pass, to count round trips that `pg_stat_statements` cannot see (sqlx's pings when a
//! connection leaves and returns to the pool, the Parse/Describe of a statement not yet
//! prepared on a connection).
//!
//! A round trip is a message after which the client waits for the server: a simple `Query`
//! ('Q'), or a `Sync` ('S') ending an extended-protocol exchange. A `Sync` is classed by what
//! came before it since the last one: an `Execute` (a statement run), a `Parse` without an
//! `Execute` (a statement prepared), a `Close` alone (a prepared statement dropped from the
//! client's cache), or nothing (a ping).
//! The service must connect with `sslmode=disable`: the proxy does not speak TLS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What went from the clients to the server so far.
#[derive(Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub simple_queries: AtomicU64,
    pub executes: AtomicU64,
    pub prepares: AtomicU64,
    pub closes: AtomicU64,
    pub pings: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub connections: u64,
    pub simple_queries: u64,
    pub executes: u64,
    pub prepares: u64,
    pub closes: u64,
    pub pings: u64,
}

impl Counts {
    pub fn round_trips(&self) -> u64 {
        self.simple_queries + self.executes + self.prepares + self.closes + self.pings
    }

    pub fn minus(&self, earlier: &Self) -> Self {
        Self {
            connections: self.connections - earlier.connections,
            simple_queries: self.simple_queries - earlier.simple_queries,
            executes: self.executes - earlier.executes,
            prepares: self.prepares - earlier.prepares,
            closes: self.closes - earlier.closes,
            pings: self.pings - earlier.pings,
        }
    }
}

impl Counters {
    pub fn snapshot(&self) -> Counts {
        let load = |c: &AtomicU64| c.load(Ordering::SeqCst);
        Counts {
            connections: load(&self.connections),
            simple_queries: load(&self.simple_queries),
            executes: load(&self.executes),
            prepares: load(&self.prepares),
            closes: load(&self.closes),
            pings: load(&self.pings),
        }
    }
}

pub struct Proxy {
    pub port: u16,
    pub counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free local port and forwards every connection to `upstream` (host:port).
    pub async fn start(upstream: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counters) = (upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        counters.connections.fetch_add(1, Ordering::SeqCst);
                        let _ = relay(client, server, counters).await;
                    }
                });
            }
        });
        Ok(Self {
            port,
            counters,
            task,
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    counters: Arc<Counters>,
) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut parser = Parser::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            parser.feed(&buf[..n], &counters);
            server_write.write_all(&buf[..n]).await?;
        }
        server_write.shutdown().await
    };
    let downstream = async {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    // Whichever side ends first, by end of stream or by error (a client killed with unread
    // data resets its connection), ends both: dropping the halves closes the sockets, so the
    // server's backend sees its client go and exits.
    tokio::select! {
        up = upstream => up,
        down = downstream => down,
    }
}

/// Splits the client's byte stream into protocol messages: first the untyped startup
/// message (length, then body), then typed ones (type byte, length, body).
#[derive(Default)]
struct Parser {
    started: bool,
    /// The header being read: type byte (once started) and the 4-byte length.
    header: Vec<u8>,
    /// Body bytes still to skip of the current message.
    remaining: usize,
    /// Since the last Sync: an Execute, a Parse, a Close (a statement dropped from the
    /// client's cache).
    executed: bool,
    parsed: bool,
    closed: bool,
}

impl Parser {
    fn feed(&mut self, mut bytes: &[u8], counters: &Counters) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(bytes.len());
                self.remaining -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            let header_len = if self.started { 5 } else { 4 };
            let take = (header_len - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.header.len() < header_len {
                continue;
            }
            let len_bytes = &self.header[header_len - 4..];
            let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            // The length counts itself, not the type byte.
            self.remaining = (len as usize).saturating_sub(4);
            if self.started {
                self.message(self.header[0], counters);
            }
            self.started = true;
            self.header.clear();
        }
    }

    fn message(&mut self, kind: u8, counters: &Counters) {
        match kind {
            b'Q' => {
                counters.simple_queries.fetch_add(1, Ordering::SeqCst);
            }
            b'P' => self.parsed = true,
            b'E' => self.executed = true,
            b'C' => self.closed = true,
            b'S' => {
                let counter = if self.executed {
                    &counters.executes
                } else if self.parsed {
                    &counters.prepares
                } else if self.closed {
                    &counters.closes
                } else {
                    &counters.pings
                };
                counter.fetch_add(1, Ordering::SeqCst);
                self.executed = false;
                self.parsed = false;
                self.closed = false;
            }
            _ => {}
        }
    }
}
