//! The NATS JetStream relay: publishes every event of the global log, in position order, to a
//! JetStream stream, for analytics consumers that prefer NATS to HTTP.
//!
//! - Subjects: `{prefix}.{appid}.{EventType}` (default prefix `identity.events`; `_` for an
//!   event of no app), so a consumer can subscribe to one app or one event type.
//! - Body: the event's analytics view (`crate::analytics`), personal data redacted. Headers:
//!   `Nats-Msg-Id` = event id, `Identity-Position` = the event's global position.
//! - Progress: a checkpoint per stream in the database (`relay_checkpoints`), moved after
//!   JetStream acknowledged the batch (publish, then checkpoint). A crash in between publishes
//!   the batch again; the relay skips what the stream already holds (see `publisher`), and
//!   JetStream's duplicate window drops any repeat by its `Nats-Msg-Id`.
//! - One active relay per stream across instances. Each batch runs under the relay's
//!   PostgreSQL advisory lock, transaction-scoped as for the projection runners: a session lock
//!   on a dedicated connection would outlive a relay that hangs, and would be lost silently
//!   with its connection; a transaction lock is released with the batch, whatever happens, and
//!   an idle standby takes over at its next try. On SQLite (one instance) there is no lock.
//! - Outages: any failure (NATS down, database down) is logged at `warn` and retried with
//!   exponential backoff up to `MAX_ERROR_BACKOFF` (1 s while the database is unavailable);
//!   the relay never gives up and never skips: it resumes from its checkpoint.
//! - Wake-ups: `Store::appended()`, with a slow poll as fallback, as the projection runners.

mod publisher;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::store::{AppendWaiter, Store, StoreError};

/// The message body, for the test of every consumer's view (`crate::analytics`).
#[cfg(test)]
pub(crate) use publisher::body;
pub use publisher::{subject, POSITION_HEADER};

/// Events per batch (one lock, one pipelined publish, one checkpoint).
const BATCH: u32 = 1000;
/// After a look that found nothing, look again this soon, doubling up to 1 s.
const MIN_IDLE: Duration = Duration::from_millis(10);
const IDLE: Backoff = Backoff::new(MIN_IDLE, Duration::from_secs(1));
/// How often a standby relay checks whether the active one went away.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// After failures in a row: 100 ms, doubling up to `MAX_ERROR_BACKOFF`.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(5);
const ERROR_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), MAX_ERROR_BACKOFF);
/// The same while the database is unavailable, up to 1 s only: the relay resumes within a
/// second of it coming back.
const UNAVAILABLE_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(1));

/// What to publish where. `stream` also names the relay's checkpoint. `Debug` redacts the
/// URL's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayConfig {
    pub nats_url: String,
    /// JetStream stream name (default `IDENTITY_EVENTS`).
    pub stream: String,
    /// Subject prefix (default `identity.events`); the stream takes `{prefix}.>`.
    pub subject_prefix: String,
    /// The stream's duplicate window when the relay creates it (default 10 minutes).
    pub duplicate_window: Duration,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("nats_url", &crate::redact::url(&self.nats_url))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("duplicate_window", &self.duplicate_window)
            .finish()
    }
}

impl RelayConfig {
    pub const DEFAULT_STREAM: &'static str = "IDENTITY_EVENTS";
    pub const DEFAULT_SUBJECT_PREFIX: &'static str = "identity.events";

    /// The defaults, for the NATS server at `nats_url` (as `IDENTITY_NATS_URL`).
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            stream: Self::DEFAULT_STREAM.into(),
            subject_prefix: Self::DEFAULT_SUBJECT_PREFIX.into(),
            duplicate_window: Duration::from_secs(10 * 60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Nats(#[source] async_nats::Error),
    #[error("JetStream stream {stream} cannot be used: {why}")]
    IncompatibleStream { stream: String, why: String },
    /// The stream moved on between reading its tail and publishing (another instance
    /// published); the batch is retried from the stream's new tail.
    #[error("the stream changed while publishing")]
    Raced,
}

impl RelayError {
    fn nats(e: impl Into<async_nats::Error>) -> Self {
        Self::Nats(e.into())
    }
}

/// The relay's progress as stored in the database (any instance's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    pub stream: String,
    /// Every event up to this position is in the stream (0 before the first batch).
    pub position: i64,
    /// When the checkpoint last moved.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The relay checkpoint of `stream` (e.g. `RelayConfig::DEFAULT_STREAM`), for readiness and
/// metrics: lag = last log position − `position`.
pub async fn status(store: &dyn Store, stream: &str) -> Result<RelayStatus, StoreError> {
    let checkpoint = store.relay_checkpoint(stream).await?;
    Ok(RelayStatus {
        stream: stream.to_owned(),
        position: checkpoint.map_or(0, |c| c.position),
        updated_at: checkpoint.map(|c| c.updated_at),
    })
}

/// This instance's relay as it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayHealth {
    /// The last checkpoint this instance wrote (0 before its first batch).
    pub published: i64,
    /// Failed attempts in a row (0 when the last attempt worked).
    pub failures: u32,
    pub last_error: Option<String>,
}

/// The running relay. Dropping it aborts the task (safe: publish, then checkpoint);
/// `shutdown` stops it at once too, since a batch cut short is simply retried by whoever runs
/// next.
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    health: watch::Receiver<RelayHealth>,
    task: Option<JoinHandle<()>>,
}

impl RelayHandle {
    pub fn health(&self) -> watch::Receiver<RelayHealth> {
        self.health.clone()
    }

    /// False once the relay's task has ended (it returned or panicked).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Starts the relay in the background. It connects to NATS by itself (and again after
/// failures), so this returns at once even when NATS is down.
pub fn spawn_relay(store: Arc<dyn Store>, config: RelayConfig) -> RelayHandle {
    let (stop, stopped) = watch::channel(false);
    let (health_tx, health) = watch::channel(RelayHealth::default());
    let task = tokio::spawn(run(store, config, stopped, health_tx));
    RelayHandle {
        stop,
        health,
        task: Some(task),
    }
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Published and checkpointed up to this position.
    Published(i64),
    Idle,
    /// Another instance holds the lock.
    Busy,
    /// The checkpoint moved between reading it and locking.
    Stale,
}

#[tracing::instrument(skip_all, fields(stream = %config.stream))]
async fn run(
    store: Arc<dyn Store>,
    config: RelayConfig,
    mut stop: watch::Receiver<bool>,
    health: watch::Sender<RelayHealth>,
) {
    let mut appended = AppendWaiter::new(store.appended());
    let mut publisher: Option<publisher::Publisher> = None;
    let mut idle = IDLE;
    let mut failures: u32 = 0;
    while !*stop.borrow() {
        appended.mark_seen();
        let attempt = async {
            if publisher.is_none() {
                publisher = Some(publisher::Publisher::connect(&config).await?);
                tracing::info!(url = %crate::redact::url(&config.nats_url), "relay connected to NATS");
            }
            match publisher.as_mut() {
                Some(p) => step(store.as_ref(), p, &config.stream).await,
                None => Ok(Step::Idle),
            }
        };
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = stop.changed() => break,
        };
        let pause = match outcome {
            Ok(Step::Published(position)) => {
                failures = 0;
                idle.reset();
                health.send_replace(RelayHealth {
                    published: position,
                    failures,
                    last_error: None,
                });
                continue;
            }
            Ok(Step::Stale) | Err(RelayError::Raced) => {
                tracing::debug!("relay batch raced with another publisher; retrying");
                MIN_IDLE
            }
            Ok(Step::Idle) => {
                if failures > 0 {
                    failures = 0;
                    health.send_modify(|h| {
                        h.failures = 0;
                        h.last_error = None;
                    });
                }
                idle.pause()
            }
            Ok(Step::Busy) => LOCK_RETRY,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "relay batch failed; will retry");
                health.send_modify(|h| {
                    h.failures = failures;
                    h.last_error = Some(e.to_string());
                });
                if matches!(e, RelayError::IncompatibleStream { .. }) {
                    publisher = None;
                }
                let backoff = match &e {
                    RelayError::Store(e) if e.is_unavailable() => {
                        UNAVAILABLE_BACKOFF.after(failures)
                    }
                    _ => ERROR_BACKOFF.after(failures),
                };
                // No early wake-up on appends while failing: wait the backoff out.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        tokio::select! {
            woke = appended.appended() => if woke { idle.reset() },
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Publishes the next batch after the checkpoint, if any, then moves the checkpoint.
async fn step(
    store: &dyn Store,
    publisher: &mut publisher::Publisher,
    name: &str,
) -> Result<Step, RelayError> {
    // Read outside the lock's transaction, as the projection runners do.
    let from = store
        .relay_checkpoint(name)
        .await?
        .map_or(0, |c| c.position);
    let events = store.read_all(from, BATCH).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(Step::Idle);
    };
    let Some(lease) = store.try_lock_relay(name).await? else {
        publisher.forget_tail();
        return Ok(Step::Busy);
    };
    if lease.position() != from {
        publisher.forget_tail();
        return Ok(Step::Stale);
    }
    publisher.publish(from, &events).await?;
    if !lease.advance(last).await? {
        return Ok(Step::Stale);
    }
    Ok(Step::Published(last))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{AppendBatch, ExpectedVersion, NewEvent};
    use domain::{EventId, Metadata, StreamId};
    use futures::StreamExt;
    use uuid::Uuid;

    /// Appends `count` events, one stream each.
    async fn append(store: &dyn Store, count: usize) {
        for _ in 0..count {
            let event = NewEvent {
                event_id: EventId::from_uuid(Uuid::now_v7()),
                event_type: "UserLoggedIn".into(),
                schema_version: 1,
                occurred_at: Utc::now(),
                payload: serde_json::json!({}),
                metadata: Metadata::system(Uuid::now_v7()),
            };
            let stream = StreamId::from_stored(format!("test-{}", Uuid::now_v7()));
            let batch =
                AppendBatch::default().stream(stream, ExpectedVersion::NoStream, vec![event]);
            store.append(batch).await.unwrap();
        }
    }

    /// The log positions the stream holds, in stream order. (The relay tests under
    /// `infra/tests/relay` have the like; a unit test cannot share them: `testkit` would bring
    /// in a second `infra`.)
    async fn stream_positions(config: &RelayConfig) -> Vec<i64> {
        let client = async_nats::connect(config.nats_url.as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(&config.stream).await.unwrap();
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .unwrap();
        let held = stream.get_info().await.unwrap().state.messages as usize;
        let mut messages = consumer.messages().await.unwrap().take(held);
        let mut positions = Vec::new();
        while let Some(message) = messages.next().await {
            let headers = message.unwrap().headers.clone().unwrap();
            positions.push(
                headers
                    .get(POSITION_HEADER)
                    .unwrap()
                    .as_str()
                    .parse()
                    .unwrap(),
            );
        }
        positions
    }

    async fn delete_stream(config: &RelayConfig) {
        let client = async_nats::connect(config.nats_url.as_str()).await.unwrap();
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&config.stream)
            .await;
    }

    /// Two instances' relays take turns: the one that goes second remembers the stream's tail
    /// from its own last batch, which the other has passed since. Numbered from that tail, its
    /// batch's first messages were refused and the later ones stored, out of place (the relay
    /// test of two instances lost 10 to 30 events that way in about one run in 30 under load).
    /// Then the same after a batch published but not checkpointed (a crash between the two).
    #[tokio::test]
    async fn a_relay_whose_remembered_tail_another_passed_leaves_no_gap() {
        let Some(nats) = testkit::nats_url().await else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("relay-tail-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::connect(&format!("sqlite://{}", dir.join("log.db").display()))
            .await
            .unwrap();
        let tag = format!("{:016x}", rand::random::<u64>());
        let config = RelayConfig {
            stream: format!("IDENTITY_TEST_{}", tag.to_uppercase()),
            subject_prefix: format!("identity_test.{tag}"),
            ..RelayConfig::new(nats)
        };
        let mut first = publisher::Publisher::connect(&config).await.unwrap();
        let mut second = publisher::Publisher::connect(&config).await.unwrap();
        let (store, name) = (store.as_ref(), config.stream.as_str());

        append(store, 3).await;
        assert_eq!(
            step(store, &mut first, name).await.unwrap(),
            Step::Published(3)
        );
        append(store, 2).await;
        assert_eq!(
            step(store, &mut second, name).await.unwrap(),
            Step::Published(5)
        );
        append(store, 6).await;
        // Before the fix: `Raced`, with events 8 to 11 stored right after 5.
        let turn = step(store, &mut first, name).await;
        // Published, never checkpointed: the checkpoint stays at 11. The next batch's first
        // two messages are then repeats, which NATS answers as duplicates (it checks the
        // message id before the expected sequence); the rest follow in place.
        append(store, 2).await;
        second
            .publish(11, &store.read_all(11, 100).await.unwrap())
            .await
            .unwrap();
        append(store, 3).await;
        let after_a_crash = step(store, &mut first, name).await;

        let positions = stream_positions(&config).await;
        delete_stream(&config).await;
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(turn.unwrap(), Step::Published(11));
        assert_eq!(after_a_crash.unwrap(), Step::Published(16));
        assert_eq!(positions, (1..=16).collect::<Vec<i64>>());
    }

    #[test]
    fn debug_redacts_the_url_credentials() {
        let printed = format!(
            "{:?}",
            RelayConfig::new("nats://u:natspass@nats.internal:4222")
        );
        assert!(printed.contains("nats.internal"), "{printed}");
        assert!(!printed.contains("natspass"), "{printed}");
    }

    #[test]
    fn defaults_match_the_documented_names() {
        let config = RelayConfig::new("nats://127.0.0.1:4222");
        assert_eq!(config.stream, "IDENTITY_EVENTS");
        assert_eq!(config.subject_prefix, "identity.events");
        assert!(config.duplicate_window >= Duration::from_secs(120));
    }
}
