//! The events page's rows: the global log in position order, in the analytics view (what
//! `GET /v1/events` sends: personal data redacted), filtered by event type and app.
//!
//! A filter that matches rarely must not make one page read the whole log: a page reads at
//! most [`MAX_SCAN`] events, and its next-page link continues after the last one read.

use infra::analytics::analytics_view;
use infra::store::Store;
use serde_json::Value;

use crate::http::ApiError;

/// Rows on one page.
pub const PAGE_SIZE: usize = 50;
/// Events one page reads at most, matching or not.
pub const MAX_SCAN: usize = 5_000;
/// Events read from the store at a time.
const READ_BATCH: u32 = 500;

/// Which events to show; `None` shows all.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub appid: Option<String>,
}

impl EventFilter {
    /// An event type must be one of the catalog's (`GET /v1/events/schema`).
    pub fn new(event_type: Option<String>, appid: Option<String>) -> Result<Self, ApiError> {
        if let Some(wanted) = &event_type {
            if !event_types().any(|known| known == wanted) {
                return Err(ApiError::InvalidRequest(
                    "type must be an event type, e.g. UserLoggedIn".into(),
                ));
            }
        }
        Ok(Self { event_type, appid })
    }

    fn matches(&self, event_type: &str, appid: Option<&str>) -> bool {
        self.event_type.as_deref().is_none_or(|t| t == event_type)
            && self.appid.as_deref().is_none_or(|a| Some(a) == appid)
    }
}

/// Every event type, in catalog order (the filter's choices).
pub fn event_types() -> impl Iterator<Item = &'static str> {
    domain::event_schema::catalog()
        .into_iter()
        .map(|schema| schema.event_type)
}

/// One event as analytics see it.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub position: i64,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub event_type: String,
    pub stream_id: String,
    pub appid: Option<String>,
    pub user_id: Option<String>,
    /// The redacted payload, compact JSON.
    pub payload: String,
}

pub struct EventPage {
    pub rows: Vec<EventRow>,
    /// Where the next page starts (`after`), when the log may hold more.
    pub next_after: Option<i64>,
}

/// Up to [`PAGE_SIZE`] matching events after position `after`.
pub async fn page(
    store: &dyn Store,
    after: i64,
    filter: &EventFilter,
) -> Result<EventPage, ApiError> {
    let mut rows = Vec::new();
    let (mut cursor, mut scanned) = (after, 0usize);
    loop {
        let batch = store.read_all(cursor, READ_BATCH).await?;
        let read_all_there_is = batch.len() < READ_BATCH as usize;
        for event in &batch {
            cursor = event.position;
            scanned += 1;
            if filter.matches(&event.event_type, infra::analytics::appid(event)) {
                rows.push(row(event)?);
                if rows.len() == PAGE_SIZE {
                    return Ok(EventPage {
                        rows,
                        next_after: Some(cursor),
                    });
                }
            }
        }
        if read_all_there_is {
            return Ok(EventPage {
                rows,
                next_after: None,
            });
        }
        if scanned >= MAX_SCAN {
            return Ok(EventPage {
                rows,
                next_after: Some(cursor),
            });
        }
    }
}

fn row(event: &infra::store::RecordedEvent) -> Result<EventRow, ApiError> {
    let view = serde_json::to_value(analytics_view(event)).map_err(ApiError::internal)?;
    let text = |key: &str| view.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(EventRow {
        position: event.position,
        occurred_at: event.occurred_at,
        event_type: event.event_type.clone(),
        stream_id: event.stream_id.as_str().to_owned(),
        appid: text("appid"),
        user_id: text("user_id"),
        payload: view
            .get("payload")
            .map(Value::to_string)
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_knows_the_catalog_and_matches_type_and_app() {
        assert!(EventFilter::new(Some("NoSuchEvent".into()), None).is_err());
        let filter = EventFilter::new(Some("UserLoggedIn".into()), Some("wxa".into()))
            .expect("a known type");
        assert!(filter.matches("UserLoggedIn", Some("wxa")));
        assert!(!filter.matches("UserLoggedIn", Some("wxb")));
        assert!(!filter.matches("UserLoggedIn", None));
        assert!(!filter.matches("UserBlocked", Some("wxa")));
        assert!(EventFilter::default().matches("Anything", None));
        assert!(event_types().any(|t| t == "UserErased"));
    }
}
