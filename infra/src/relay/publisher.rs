//! The NATS side of the relay: the JetStream stream, the subject scheme, and publishing a batch
//! so that the stream holds the log in order, each event once.
//!
//! Order is enforced by the server, not hoped for. Each message carries
//! `Nats-Expected-Last-Sequence`: the stream sequence it must follow. A batch is published
//! pipelined (all messages, then all acks), so without that header a message lost in a
//! reconnect (written to a dying socket) would let the next ones in, and its republication
//! would land after them. With it, everything after a lost message is refused, and the next
//! attempt resumes right after the stream's real last message.
//!
//! That holds only while the batch is numbered from the stream's real tail. A tail remembered
//! from the relay's own last batch is stale once another instance has checkpointed past it;
//! numbered from it, the first messages would be refused but as many further on would match
//! the real last sequence and be stored out of place (`Tail::is_current_for`).
//!
//! All of this assumes that only relays publish on `{prefix}.>`, one deployment per stream,
//! that the stream is never cut at its end (limits remove its oldest messages; a purge empties
//! it), and that the database is not restored behind it.
//!
//! Where to resume comes from the stream itself ("the tail"): its last sequence and, from the
//! `Identity-Position` header of its last message, the position of the last event stored.
//! Events up to that position are skipped, so a batch published but not checkpointed (a crash,
//! a lost database connection) is not sent twice. `Nats-Msg-Id` (the event id) stays on every
//! message as the second guard: JetStream drops a repeat within the duplicate window.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType, Stream,
};
use async_nats::jetstream::{self, Context};

use super::{RelayConfig, RelayError};
use crate::analytics;
use crate::store::RecordedEvent;

/// The header naming the event's position in the global log.
pub const POSITION_HEADER: &str = "Identity-Position";
/// How long to wait for a JetStream answer (publish ack or API request).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `{prefix}.{appid}.{EventType}`, e.g. `identity.events.wx0123456789abcdef.UserLoggedIn`, or
/// with `_` for an event of no app: `identity.events._.UserBlocked`. A token holds only
/// `[A-Za-z0-9_-]` (anything else becomes `_`), so an odd value cannot add subject levels or
/// wildcards.
pub fn subject(prefix: &str, event: &RecordedEvent) -> String {
    let appid = analytics::appid(event).unwrap_or_default();
    format!("{prefix}.{}.{}", token(appid), token(&event.event_type))
}

fn token(raw: &str) -> String {
    if raw.is_empty() {
        return "_".into();
    }
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The stream's last message: its sequence, and the log position of the event it holds (when
/// it is one of ours and still there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tail {
    sequence: u64,
    position: Option<i64>,
}

impl Tail {
    /// Whether a tail this relay remembers from its last batch can number a batch that starts
    /// after the checkpoint `from`. At or past `from`, the tail is a message the stream holds
    /// and the batch lists every event after it, so each expected sequence names one event:
    /// whatever another instance stored since is dropped by id or refused, never misplaced.
    fn is_current_for(&self, from: i64) -> bool {
        self.position.is_some_and(|position| position >= from)
    }
}

/// A connection to NATS with the stream checked, and what the relay knows of its tail.
pub(crate) struct Publisher {
    jetstream: Context,
    stream: Stream,
    prefix: String,
    /// Known after a successful batch; forgotten after any failure (read again from the
    /// stream before the next publish), and not used once the checkpoint has passed it
    /// (`Tail::is_current_for`).
    tail: Option<Tail>,
}

impl Publisher {
    /// Connects, creates the stream or checks the existing one.
    pub async fn connect(config: &RelayConfig) -> Result<Self, RelayError> {
        let client = async_nats::ConnectOptions::new()
            .name("identityd relay")
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(config.nats_url.as_str())
            .await
            .map_err(RelayError::nats)?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client);
        let stream = ensure_stream(&jetstream, config).await?;
        Ok(Self {
            jetstream,
            stream,
            prefix: config.subject_prefix.clone(),
            tail: None,
        })
    }

    /// Forgets the tail: another instance may have published since. (A second safeguard:
    /// `Tail::is_current_for` already refuses a tail the checkpoint has passed.)
    pub fn forget_tail(&mut self) {
        self.tail = None;
    }

    /// Makes sure every event of the batch (the log after the checkpoint `from`, in order) is
    /// in the stream, after the events before it and once each. On error nothing is known:
    /// the caller retries the batch later.
    pub async fn publish(&mut self, from: i64, events: &[RecordedEvent]) -> Result<(), RelayError> {
        let result = self.publish_once(from, events).await;
        if result.is_err() {
            self.tail = None;
        }
        result
    }

    async fn publish_once(
        &mut self,
        from: i64,
        events: &[RecordedEvent],
    ) -> Result<(), RelayError> {
        let tail = match self.tail {
            Some(tail) if tail.is_current_for(from) => tail,
            _ => self.read_tail().await?,
        };
        let pending: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| tail.position.is_none_or(|stored| e.position > stored))
            .collect();
        let Some(last) = pending.last() else {
            // All stored already (an earlier attempt got them in but not checkpointed).
            return Ok(());
        };
        let mut acks = Vec::with_capacity(pending.len());
        for (offset, event) in (0u64..).zip(&pending) {
            let message = PublishMessage::build()
                .payload(body(event)?.into())
                .message_id(event.event_id.to_string())
                .header(POSITION_HEADER, event.position.to_string().as_str())
                .expected_last_sequence(tail.sequence + offset);
            let ack = self
                .jetstream
                .send_publish(subject(&self.prefix, event), message)
                .await
                .map_err(RelayError::nats)?;
            acks.push(ack);
        }
        let mut sequence = tail.sequence;
        let mut duplicates = false;
        for ack in acks {
            match ack.await {
                Ok(ack) => {
                    duplicates |= ack.duplicate;
                    sequence = ack.sequence;
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(RelayError::Raced)
                }
                Err(e) => return Err(RelayError::nats(e)),
            }
        }
        // A duplicate ack names the earlier copy's sequence, so the tail is not known then.
        self.tail = (!duplicates).then_some(Tail {
            sequence,
            position: Some(last.position),
        });
        Ok(())
    }

    async fn read_tail(&mut self) -> Result<Tail, RelayError> {
        let state = self
            .stream
            .info()
            .await
            .map_err(RelayError::nats)?
            .state
            .clone();
        if state.last_sequence == 0 || state.messages == 0 {
            return Ok(Tail {
                sequence: state.last_sequence,
                position: None,
            });
        }
        let position = match self.stream.get_raw_message(state.last_sequence).await {
            Ok(message) => message
                .headers
                .get(POSITION_HEADER)
                .and_then(|v| v.as_str().parse::<i64>().ok()),
            // Removed meanwhile (limits, a purge): fall back to the checkpoint.
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
            {
                None
            }
            Err(e) => return Err(RelayError::nats(e)),
        };
        Ok(Tail {
            sequence: state.last_sequence,
            position,
        })
    }
}

/// The message body: the event's analytics view.
pub(crate) fn body(event: &RecordedEvent) -> Result<Vec<u8>, RelayError> {
    serde_json::to_vec(&analytics::analytics_view(event)).map_err(RelayError::nats)
}

/// Creates the stream, or checks that the existing one takes our subjects. A short duplicate
/// window or other storage choices are an operator's call: logged, not refused.
async fn ensure_stream(jetstream: &Context, config: &RelayConfig) -> Result<Stream, RelayError> {
    let subjects = format!("{}.>", config.subject_prefix);
    let wanted = StreamConfig {
        name: config.stream.clone(),
        description: Some("identityd: every identity event, in log order".into()),
        subjects: vec![subjects.clone()],
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        storage: StorageType::File,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    };
    let mut stream = jetstream
        .get_or_create_stream(wanted)
        .await
        .map_err(RelayError::nats)?;
    let found = stream
        .info()
        .await
        .map_err(RelayError::nats)?
        .config
        .clone();
    if !found.subjects.iter().any(|s| s == &subjects || s == ">") {
        return Err(RelayError::IncompatibleStream {
            stream: config.stream.clone(),
            why: format!(
                "its subjects {:?} do not include {subjects}",
                found.subjects
            ),
        });
    }
    if found.duplicate_window < config.duplicate_window {
        tracing::warn!(
            stream = %config.stream,
            window = ?found.duplicate_window,
            "the stream's duplicate window is shorter than the relay's setting"
        );
    }
    if found.retention != RetentionPolicy::Limits {
        tracing::warn!(stream = %config.stream, retention = ?found.retention,
            "the stream does not keep messages by limits: consumers may miss events");
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::{EventId, Metadata, StreamId};
    use serde_json::json;
    use uuid::Uuid;

    fn event(event_type: &str, payload: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            event_id: EventId::from_uuid(Uuid::now_v7()),
            stream_id: StreamId::from_stored("user-x".into()),
            stream_version: 1,
            event_type: event_type.into(),
            schema_version: 1,
            occurred_at: Utc::now(),
            payload,
            metadata: Metadata::system(Uuid::now_v7()),
        }
    }

    #[test]
    fn subjects_name_the_app_and_the_event_type() {
        let login = event("UserLoggedIn", json!({"appid": "wx0123456789abcdef"}));
        assert_eq!(
            subject("identity.events", &login),
            "identity.events.wx0123456789abcdef.UserLoggedIn"
        );
        assert_eq!(
            subject("identity.events", &event("UserBlocked", json!({}))),
            "identity.events._.UserBlocked"
        );
        let odd = event("Odd.Type", json!({"appid": "a.b *>"}));
        assert_eq!(subject("p", &odd), "p.a_b___.Odd_Type");
    }
}
