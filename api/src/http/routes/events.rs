//! The event stream for analytics: the global log in position order, as pages (catch-up) and
//! live as Server-Sent Events, in the redacted analytics view (`infra::analytics`); and the
//! schema of every event type.
//!
//! The live stream is pull-based: it reads a bounded page from the store only when the client
//! has taken the previous one, so a slow consumer holds one page of memory and no database
//! connection while it lags, and never slows a writer down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::TryStreamExt;
use infra::analytics::analytics_view;
use infra::api_keys::Scope;
use infra::store::{AppendWaiter, RecordedEvent, Store};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use utoipa::IntoParams;

use crate::http::api_key::{ApiCaller, EventsRead, Scoped};
use crate::http::query::{self, ApiQuery};
use crate::http::responses::KeyErrors;
use crate::http::schemas;
use crate::http::state::AppState;
use crate::http::stream_slots::StreamSlot;
use crate::http::values;
use crate::http::ApiError;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Events the live stream reads from the store at a time: its memory bound per client.
const STREAM_PAGE: u32 = 500;
/// Comment lines sent while there is nothing new, so proxies keep the connection open and the
/// client can tell a quiet stream from a dead one.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// What an `EventSource` waits before reconnecting.
const RECONNECT: Duration = Duration::from_secs(1);
/// Polling when idle: from `MIN_IDLE` after a wake-up or an event, doubling to `MAX_IDLE`.
/// Appends wake the stream at once; polling covers a lost notification, appends by processes
/// that cannot wake us (another SQLite writer), and PostgreSQL's read lag (an event announced
/// as committed is readable only once older transactions have ended).
const MIN_IDLE: Duration = Duration::from_millis(10);
const MAX_IDLE: Duration = Duration::from_secs(1);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", get(list))
        .route("/v1/events/stream", get(stream))
        .route("/v1/events/schema", get(schema))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this position (exclusive): 0 (the default) starts at the beginning; pass
    /// the previous page's `next_after` to continue.
    #[param(value_type = Option<values::Position>)]
    after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<values::EventPageLimit>)]
    limit: Option<String>,
}

/// The global event stream, a page at a time
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(EventsQuery),
    security(("api_key" = ["events:read"])),
    description = "Every event in position order, from `after` on, in the analytics view \
        (personal data redacted). Requires an API key with the `events:read` scope.",
    responses(
        (status = 200, description = "A page of events", body = schemas::EventPage),
        (status = 400, description = "`invalid_request`: an unknown parameter, or a bad `after` or `limit`"),
        KeyErrors<EventsRead>,
    )
)]
async fn list(
    State(state): State<AppState>,
    _: Scoped<EventsRead>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let after = query::position("after", q.after.as_deref())?;
    let limit = query::limit_of(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    // Each event is encoded as it comes from the database (no page of decoded events, no JSON
    // tree): `{"events":[…],"next_after":N}`, as `schemas::EventPage` describes.
    let mut events = state.store.read_all_stream(after, limit);
    let mut body = Vec::with_capacity(64 * 1024);
    body.extend_from_slice(b"{\"events\":[");
    let mut next_after = after;
    while let Some(event) = events.try_next().await? {
        let first = next_after == after;
        if !first {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &analytics_view(&event)).map_err(ApiError::internal)?;
        next_after = event.position;
    }
    body.extend_from_slice(format!("],\"next_after\":{next_after}}}").as_bytes());
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this position (default 0: from the beginning). A `Last-Event-ID` header
    /// takes precedence, so an `EventSource` reconnecting to the same URL resumes where it
    /// stopped.
    #[param(value_type = Option<values::Position>)]
    after: Option<String>,
}

/// The global event stream, live (Server-Sent Events)
#[utoipa::path(
    get,
    path = "/v1/events/stream",
    tag = "events",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<values::Position>, Header,
            description = "The `id` of the last event received: the stream resumes after it."),
    ),
    security(("api_key" = ["events:read"])),
    description = "Catches up from `after` (or `Last-Event-ID`), then follows the log as it \
        grows, forever. Each event is one SSE message: `id` = its position, `event` = its type, \
        `data` = its analytics view as JSON (as in `GET /v1/events`). A comment line \
        (`: heartbeat`) comes every 15 seconds when nothing else does. Every event comes \
        exactly once, in position order; reconnecting with `Last-Event-ID` continues with \
        the next one. Requires an API key with the `events:read` scope; the stream ends \
        within 10 seconds of the key's revocation. At most `IDENTITY_MAX_STREAMS_PER_KEY` \
        (default 4) streams per key are open at once on an instance.",
    responses(
        (status = 200, description = "An endless `text/event-stream`",
            content_type = "text/event-stream", body = String,
            example = json!("id: 42\nevent: UserLoggedIn\ndata: {\"position\":42,…}\n\n")),
        (status = 400, description = "`invalid_request`: an unknown parameter, or a bad `after` or `Last-Event-ID`"),
        (status = 429, description = "`rate_limited`: this API key already has `IDENTITY_MAX_STREAMS_PER_KEY` streams open on this instance, or its client failed authentication too often",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        KeyErrors<EventsRead>,
    )
)]
async fn stream(
    State(state): State<AppState>,
    scoped: Scoped<EventsRead>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::InvalidRequest("Last-Event-ID must be a position".into()))
        })
        .transpose()?;
    let after = match last_event_id {
        Some(id) => query::position("Last-Event-ID", Some(id.trim()))?,
        None => query::position("after", q.after.as_deref())?,
    };
    let slot = state
        .stream_slots
        .take(&scoped.caller.key_id)
        .ok_or(ApiError::TooManyStreams {
            max: state.stream_slots.max(),
        })?;
    let follower = Follower {
        store: state.store.clone(),
        key: KeyWatch {
            caller: scoped.caller,
            next_check: Instant::now() + KEY_CHECK,
            confirmed_at: Instant::now(),
            _slot: slot,
        },
        after,
        page: VecDeque::new(),
        appended: AppendWaiter::new(state.store.appended()),
        idle: MIN_IDLE,
        shutting_down: state.shutting_down.subscribe(),
        started: false,
    };
    let events = futures::stream::unfold(follower, Follower::next);
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"));
    // nginx would otherwise buffer the stream.
    Ok(([("x-accel-buffering", "no")], sse))
}

/// How often an open stream asks the database whether its API key still holds: a revoked key's
/// streams end within this time (plus one idle pause), on every instance.
const KEY_CHECK: Duration = Duration::from_secs(5);
/// How long a stream outlives its last successful key check while the database is unavailable.
const KEY_CHECK_GRACE: Duration = Duration::from_secs(30);
/// How soon a key check the database could not answer is tried again.
const KEY_RECHECK: Duration = Duration::from_secs(1);

/// The API key a stream was opened with, and its slot among the key's open streams.
struct KeyWatch {
    caller: ApiCaller,
    next_check: Instant,
    /// When the key was last found valid: past `KEY_CHECK_GRACE` without a successful check
    /// (the database unavailable meanwhile) the stream ends, so that a revoked key's stream
    /// cannot live on through an outage, or a pool kept busy on purpose.
    confirmed_at: Instant,
    _slot: StreamSlot,
}

impl KeyWatch {
    /// False once the key is revoked, lost the scope, or cannot be checked (a database
    /// failure ends the stream: the client reconnects and is authenticated afresh).
    async fn holds(&mut self, store: &dyn Store) -> bool {
        if Instant::now() < self.next_check {
            return true;
        }
        self.next_check = Instant::now() + KEY_CHECK;
        match self.caller.still_holds(store, Scope::EventsRead).await {
            Ok(true) => {
                self.confirmed_at = Instant::now();
                true
            }
            Ok(false) => {
                tracing::info!(key_id = %self.caller.key_id, "API key revoked; ending its event stream");
                false
            }
            Err(error)
                if error.is_unavailable() && self.confirmed_at.elapsed() < KEY_CHECK_GRACE =>
            {
                // The database is down for a moment: keep the stream, check again soon.
                tracing::warn!(%error, "cannot check an event stream's API key now; retrying");
                self.next_check = Instant::now() + KEY_RECHECK;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "checking an event stream's API key failed; ending the stream");
                false
            }
        }
    }
}

/// The live stream's state between two messages.
struct Follower {
    store: Arc<dyn Store>,
    key: KeyWatch,
    /// The position of the last event handed out.
    after: i64,
    /// Read, not yet sent: at most one page.
    page: VecDeque<RecordedEvent>,
    /// `None` once the store dropped its signal (polling then does it all).
    appended: AppendWaiter,
    idle: Duration,
    shutting_down: watch::Receiver<bool>,
    started: bool,
}

impl Follower {
    /// The next message. Ends the stream when the service shuts down or the store fails; a
    /// client reconnects with `Last-Event-ID` and misses nothing.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if !self.started {
            self.started = true;
            let hello = Event::default()
                .retry(RECONNECT)
                .comment(format!("events after position {}", self.after));
            return Some((Ok(hello), self));
        }
        loop {
            if *self.shutting_down.borrow() {
                return None;
            }
            if !self.key.holds(self.store.as_ref()).await {
                return None;
            }
            if let Some(event) = self.page.pop_front() {
                self.after = event.position;
                return Some((Ok(message(&event)), self));
            }
            // Every wake-up so far is covered by the read about to happen.
            self.appended.mark_seen();
            match self.store.read_all(self.after, STREAM_PAGE).await {
                Ok(events) if !events.is_empty() => {
                    self.page = events.into();
                    self.idle = MIN_IDLE;
                    continue;
                }
                Ok(_) => {}
                // The database is down for a moment: the stream stays open (heartbeats go on)
                // and reads again after the idle pause, at most a second.
                Err(error) if error.is_unavailable() => {
                    tracing::warn!(%error, after = self.after, "event stream read failed; retrying");
                }
                Err(error) => {
                    tracing::error!(%error, after = self.after, "event stream read failed; ending the stream");
                    return None;
                }
            }
            let pause = self.idle;
            self.idle = (self.idle * 2).min(MAX_IDLE);
            tokio::select! {
                woke = self.appended.appended() => if woke { self.idle = MIN_IDLE },
                () = tokio::time::sleep(pause) => {}
                _ = self.shutting_down.changed() => return None,
            }
        }
    }
}

fn message(event: &RecordedEvent) -> Event {
    Event::default()
        .id(event.position.to_string())
        .event(&event.event_type)
        // Cannot fail: every key is a string.
        .data(serde_json::to_string(&analytics_view(event)).unwrap_or_default())
}

/// The schema of every event type
#[utoipa::path(
    get,
    path = "/v1/events/schema",
    tag = "events",
    description = "For each event type: its stream, meaning, current `schema_version`, version \
        history and a JSON Schema of its payload. Public: it describes the contract, no data.",
    responses(
        (status = 200, description = "The event catalog", body = schemas::EventCatalog),
    )
)]
async fn schema() -> Json<Value> {
    Json(domain::event_schema::document())
}
