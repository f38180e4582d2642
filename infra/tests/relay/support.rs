//! Helpers of the relay tests: the NATS server to use (or one of our own to stop and restart),
//! concurrent writers, and reading a JetStream stream back to compare it with the log.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, Context};
use chrono::Utc;
use domain::{AppId, EventId, Metadata, StreamId};
use futures::StreamExt;
use infra::relay::{self, RelayConfig, POSITION_HEADER};
use infra::store::{AppendBatch, ExpectedVersion, NewEvent, RecordedEvent, Store};
use serde_json::json;
use uuid::Uuid;

/// Personal data put in every test event: it must never reach NATS.
pub const NICKNAME: &str = "Nickname-That-Must-Not-Leak";
pub const APP: &str = "wx0123456789abcdef";

pub use testkit::{nats_url, skip};

/// What a relay test body gets: a store on a fresh database of one backend and the test NATS
/// server (skipped without it, failed under `CI=true`).
pub struct RelayDb {
    pub store: Arc<dyn Store>,
    pub url: String,
    pub nats: String,
}

impl testkit::Fixture for RelayDb {
    async fn start(backend: testkit::Backend) -> Option<Self> {
        let nats = nats_url().await?;
        let (store, url) = testkit::fresh_store(backend).await?;
        Some(Self { store, url, nats })
    }
}

/// A relay configuration of its own: a stream and subject prefix no other test (or run) uses.
pub fn unique_config(nats_url: &str) -> RelayConfig {
    let tag = format!("{:016x}", rand::random::<u64>());
    RelayConfig {
        stream: format!("IDENTITY_TEST_{}", tag.to_uppercase()),
        subject_prefix: format!("identity_test.{tag}"),
        ..RelayConfig::new(nats_url)
    }
}

pub async fn jetstream(url: &str) -> Context {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    jetstream::new(client)
}

/// Best effort: keeps the shared server from filling up.
pub async fn delete_stream(url: &str, config: &RelayConfig) {
    let _ = jetstream(url).await.delete_stream(&config.stream).await;
}

pub fn new_event(n: usize) -> NewEvent {
    const TYPES: [&str; 3] = ["UserRegistered", "UserLoggedIn", "ProfileUpdated"];
    let mut metadata = Metadata::system(Uuid::now_v7());
    // Every fourth event has no app: subject `{prefix}._.{EventType}`.
    if !n.is_multiple_of(4) {
        metadata.appid = Some(AppId::parse(APP).expect("a valid appid"));
    }
    NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: TYPES[n % TYPES.len()].to_owned(),
        schema_version: 1,
        occurred_at: Utc::now(),
        payload: json!({"n": n, "openid": format!("o_{n}"), "nickname": NICKNAME}),
        metadata,
    }
}

/// `writers` tasks append `total` events between them, `per_append` per transaction (each
/// append a new stream).
pub async fn write_concurrently(
    store: &Arc<dyn Store>,
    writers: usize,
    total: usize,
    per_append: usize,
) {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let mine = total / writers + usize::from(w < total % writers);
            tokio::spawn(async move {
                let mut written = 0;
                while written < mine {
                    let count = per_append.min(mine - written);
                    let events = (written..written + count).map(new_event).collect();
                    let batch = AppendBatch::default().stream(
                        StreamId::from_stored(format!("test-{}", Uuid::now_v7())),
                        ExpectedVersion::NoStream,
                        events,
                    );
                    store.append(batch).await.expect("append");
                    written += count;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a writer panicked");
    }
}

pub use testkit::whole_log;

/// A message as read back from the stream.
#[derive(Debug)]
pub struct Received {
    pub sequence: u64,
    pub subject: String,
    pub msg_id: String,
    pub position: i64,
    pub body: serde_json::Value,
}

/// Waits until the stream holds `count` messages (and a moment more, so extra ones show),
/// then reads every message with an ordered consumer.
pub async fn read_stream(
    js: &Context,
    stream: &str,
    count: usize,
    within: Duration,
) -> Vec<Received> {
    let deadline = Instant::now() + within;
    let mut stream = js
        .get_stream(stream)
        .await
        .expect("the relay created the stream");
    loop {
        let held = stream.info().await.expect("stream info").state.messages;
        if held as usize >= count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream holds {held} messages, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = stream.info().await.expect("stream info").state.messages as usize;
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("consume").take(held);
    let mut received = Vec::with_capacity(held);
    while let Some(message) = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .expect("the stream delivers")
    {
        let message = message.expect("a message");
        let headers = message.headers.clone().expect("headers");
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| panic!("header {name}"))
        };
        received.push(Received {
            sequence: message.info().expect("JetStream info").stream_sequence,
            subject: message.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            position: header(POSITION_HEADER).parse().expect("a position"),
            body: serde_json::from_slice(&message.payload).expect("a JSON body"),
        });
    }
    received
}

/// The stream holds exactly the log: every event once, in position order, on its subject,
/// with its analytics view as the body.
pub fn assert_exactly_the_log(received: &[Received], log: &[RecordedEvent], config: &RelayConfig) {
    let positions: Vec<i64> = received.iter().map(|r| r.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "the stream is not in strictly increasing position order"
    );
    assert_eq!(
        received.len(),
        log.len(),
        "the stream holds {} messages for {} events",
        received.len(),
        log.len()
    );
    for (message, event) in received.iter().zip(log) {
        assert_eq!(message.position, event.position);
        assert_eq!(message.msg_id, event.event_id.to_string());
        assert_eq!(
            message.subject,
            relay::subject(&config.subject_prefix, event)
        );
        assert_eq!(message.body["position"], event.position);
        assert_eq!(message.body["event_type"], event.event_type.as_str());
        assert!(!message.body.to_string().contains(NICKNAME));
    }
    assert!(received.windows(2).all(|w| w[0].sequence < w[1].sequence));
}

/// Waits for the relay's stored checkpoint to reach `position`. If it does not in time, the
/// failure says what the relays and PostgreSQL were doing when `stall` names them, so that a
/// stalled relay explains itself in CI.
pub async fn wait_for_checkpoint(
    store: &dyn Store,
    stream: &str,
    position: i64,
    within: Duration,
    stall: Option<Stall<'_>>,
) {
    let deadline = Instant::now() + within;
    loop {
        let status = relay::status(store, stream).await.expect("relay status");
        if status.position >= position {
            return;
        }
        if Instant::now() >= deadline {
            let explained = match stall {
                Some(stall) => stall.explain().await,
                None => String::new(),
            };
            panic!(
                "the relay checkpoint stays at {}, expected {position}{explained}",
                status.position
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where to look when a relay stalls: its PostgreSQL database and the relays running.
#[derive(Clone, Copy)]
pub struct Stall<'a> {
    pub url: &'a str,
    pub relays: &'a [&'a relay::RelayHandle],
}

impl Stall<'_> {
    async fn explain(self) -> String {
        let relays: Vec<_> = self
            .relays
            .iter()
            .map(|r| (r.is_running(), r.health().borrow().clone()))
            .collect();
        format!(
            "; the relays (running, health): {relays:?}; PostgreSQL: {:?}",
            testkit::postgres_activity(self.url).await
        )
    }
}

/// A `nats-server` of our own, on a free port, with its store directory kept across restarts.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one, or `None` (skip; a failure under `CI=true`) when no binary is found.
    pub async fn start() -> Option<Self> {
        let Some(binary) = nats_server_binary() else {
            return skip(
                "NATS outage",
                "no nats-server binary (set IDENTITY_TEST_NATS_SERVER or put it on PATH)",
            );
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("identity-nats-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a store directory");
        let mut server = Self {
            binary,
            port,
            dir,
            child: None,
        };
        server.restart().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store directory, and waits until it
    /// accepts connections.
    pub async fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while async_nats::connect(self.url()).await.is_err() {
            assert!(Instant::now() < deadline, "nats-server does not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nats_server_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("IDENTITY_TEST_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"));
    on_path
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|p| is_file(p))
}

fn is_file(path: &Path) -> bool {
    path.is_file()
}
