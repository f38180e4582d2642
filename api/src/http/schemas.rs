//! Schemas of answers whose JSON no type of this crate serialises: the event pages, encoded
//! event by event from `infra::analytics`'s view (no page of decoded events is ever built), and
//! the event catalog of `domain::event_schema`. Hand-written, so the black-box tests check every
//! such answer against them (`tests/src/conformance.rs`).

use std::collections::BTreeMap;

use utoipa::ToSchema;

/// One event as analytics sees it (personal data redacted).
#[derive(ToSchema)]
pub struct AnalyticsEvent {
    /// Global position: strictly increasing in commit order; gaps are allowed.
    pub position: i64,
    pub event_id: uuid::Uuid,
    #[schema(example = "UserLoggedIn")]
    pub event_type: String,
    /// The payload's schema version (always the current one: older events are upcast).
    pub schema_version: u32,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    #[schema(example = "session-0193a1b2-0000-7000-8000-000000000000")]
    pub stream_id: String,
    /// The user the event is about or who acted, when there is one.
    #[schema(required = false, nullable = false)]
    pub user_id: Option<uuid::Uuid>,
    #[schema(required = false, nullable = false)]
    pub appid: Option<String>,
    /// The payload (see `GET /v1/events/schema`), every personal value replaced by
    /// `"[redacted]"`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A page of the log. Pass `next_after` as `after` for the next page; a short page means you
/// have caught up (for now).
#[derive(ToSchema)]
pub struct EventPage {
    pub events: Vec<AnalyticsEvent>,
    /// The last event's position, or the `after` you gave when the page is empty.
    pub next_after: i64,
}

/// The catalog of event types, as served.
#[derive(ToSchema)]
pub struct EventCatalog {
    #[schema(
        rename = "$schema",
        example = "https://json-schema.org/draft/2020-12/schema"
    )]
    pub dialect: String,
    /// By event type.
    pub events: BTreeMap<String, EventTypeSchema>,
}

#[derive(ToSchema)]
pub struct EventTypeSchema {
    /// The stream the event is appended to.
    #[schema(example = "session-{session_id}")]
    pub stream: String,
    pub description: String,
    /// The current version: what every reader sees (older events are upcast).
    pub schema_version: u32,
    /// Every version, oldest first.
    pub history: Vec<SchemaChange>,
    /// JSON Schema (draft 2020-12) of the payload.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(ToSchema)]
pub struct SchemaChange {
    pub schema_version: u32,
    pub change: String,
}
