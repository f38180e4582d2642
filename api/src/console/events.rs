//! `GET /console/events?type=&appid=&after=`: the global log, as analytics see it.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::event_log::{self, EventFilter, EventRow, MAX_SCAN};
use super::filters::Filters;
use super::i18n::Lang;
use super::render::{page, Chrome};
use super::session::ConsoleSession;
use crate::http::query;
use crate::http::routes::admin::appid;
use crate::http::state::AppState;
use crate::http::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    appid: Option<String>,
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "console/events.html")]
struct EventsPage {
    chrome: Chrome,
    types: Vec<&'static str>,
    apps: Vec<String>,
    event_type: String,
    appid: String,
    after: i64,
    rows: Vec<EventRow>,
    next: Option<String>,
    max_scan: usize,
}

pub async fn show(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
    Filters { query, links }: Filters<EventsQuery>,
) -> Result<Response, ApiError> {
    let after = query::position("after", query.after.as_deref())?;
    let filter = EventFilter::new(query.event_type, appid(query.appid)?)?;
    let found = event_log::page(state.store.as_ref(), after, &filter).await?;
    page(&EventsPage {
        chrome: Chrome::of(&session, lang, "events"),
        types: event_log::event_types().collect(),
        apps: state.apps.keys().map(ToString::to_string).collect(),
        event_type: links.value("type").to_owned(),
        appid: links.value("appid").to_owned(),
        after,
        rows: found.rows,
        next: found
            .next_after
            .map(|next| links.link("/console/events", &[("after", &next.to_string())])),
        max_scan: MAX_SCAN,
    })
}
