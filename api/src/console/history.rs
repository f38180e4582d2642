//! Login history (`/console/logins`) and the audit log (`/console/audit`): the admin API's
//! filters (`LoginsQuery`, `AuditQuery`), keyset pages and personal data as admins see it
//! (`lookup`), and each filter's CSV export (`.csv`, at most `csv_export::MAX_ROWS` rows).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use projections::{AuditRecord, LoginRecord, Page};

use super::csv_export::{self, MAX_ROWS};
use super::filters::Filters;
use super::i18n::Lang;
use super::render::{page, Chrome};
use super::session::ConsoleSession;
use crate::http::routes::admin::{AuditQuery, LoginsQuery};
use crate::http::state::AppState;
use crate::http::ApiError;
use crate::usecases::lookup;

/// Rows on one page (the API's default).
const PAGE_SIZE: u32 = crate::http::query::DEFAULT_PAGE_LIMIT;

#[derive(Template)]
#[template(path = "console/logins.html")]
struct LoginsPage {
    chrome: Chrome,
    apps: Vec<String>,
    appid: String,
    from: String,
    to: String,
    rows: Vec<LoginRecord>,
    next: Option<String>,
    export: String,
    max_rows: usize,
}

/// `GET /console/logins?appid=&from=&to=&cursor=`
pub async fn logins(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
    Filters { query, links }: Filters<LoginsQuery>,
) -> Result<Response, ApiError> {
    let (filter, mut page_request) = query.parse()?;
    page_request.limit = page_request.limit.min(PAGE_SIZE);
    let Page { items, next_cursor } = lookup::logins(&state, None, &filter, &page_request).await?;
    page(&LoginsPage {
        chrome: Chrome::of(&session, lang, "logins"),
        apps: state.apps.keys().map(ToString::to_string).collect(),
        appid: links.value("appid").to_owned(),
        from: links.value("from").to_owned(),
        to: links.value("to").to_owned(),
        rows: items,
        next: next_cursor.map(|c| links.link("/console/logins", &[("cursor", &c)])),
        export: links.link("/console/logins.csv", &[]),
        max_rows: MAX_ROWS,
    })
}

/// `GET /console/logins.csv?…`: the filter's logins, newest first.
pub async fn logins_csv(
    State(state): State<AppState>,
    _: ConsoleSession,
    Filters { query, .. }: Filters<LoginsQuery>,
) -> Result<Response, ApiError> {
    let (filter, _) = query.parse()?;
    let (state, filter) = (&state, &filter);
    csv_export::export(
        "logins",
        &[
            "occurred_at",
            "position",
            "user_id",
            "appid",
            "openid",
            "client_ip",
            "device",
            "is_new_user",
            "session_id",
        ],
        move |page| async move { Ok(lookup::logins(state, None, filter, &page).await?) },
        |l: &LoginRecord| {
            vec![
                rfc3339(l.occurred_at),
                l.position.to_string(),
                l.user_id.to_string(),
                l.appid.clone().unwrap_or_default(),
                l.openid.clone().unwrap_or_default(),
                l.client_ip.clone().unwrap_or_default(),
                l.device.clone().unwrap_or_default(),
                l.is_new_user.to_string(),
                l.session_id.clone(),
            ]
        },
    )
    .await
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    user_id: String,
    actor: String,
    action: String,
    actions: Vec<&'static str>,
    from: String,
    to: String,
    rows: Vec<AuditRow>,
    next: Option<String>,
    export: String,
    max_rows: usize,
}

/// An audit entry as the page shows it.
struct AuditRow {
    record: AuditRecord,
    /// The details, compact JSON.
    details: String,
}

/// `GET /console/audit?user_id=&actor=&action=&from=&to=&cursor=`
pub async fn audit(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
    Filters { query, links }: Filters<AuditQuery>,
) -> Result<Response, ApiError> {
    let (filter, mut page_request) = query.parse()?;
    page_request.limit = page_request.limit.min(PAGE_SIZE);
    let Page { items, next_cursor } = lookup::audit(&state, &filter, &page_request).await?;
    page(&AuditPage {
        chrome: Chrome::of(&session, lang, "audit"),
        user_id: links.value("user_id").to_owned(),
        actor: links.value("actor").to_owned(),
        action: links.value("action").to_owned(),
        actions: super::event_log::event_types().collect(),
        from: links.value("from").to_owned(),
        to: links.value("to").to_owned(),
        rows: items
            .into_iter()
            .map(|record| AuditRow {
                details: record.details.to_string(),
                record,
            })
            .collect(),
        next: next_cursor.map(|c| links.link("/console/audit", &[("cursor", &c)])),
        export: links.link("/console/audit.csv", &[]),
        max_rows: MAX_ROWS,
    })
}

/// `GET /console/audit.csv?…`: the filter's audit entries, newest first.
pub async fn audit_csv(
    State(state): State<AppState>,
    _: ConsoleSession,
    Filters { query, .. }: Filters<AuditQuery>,
) -> Result<Response, ApiError> {
    let (filter, _) = query.parse()?;
    let (state, filter) = (&state, &filter);
    csv_export::export(
        "audit",
        &[
            "occurred_at",
            "position",
            "actor",
            "action",
            "target",
            "stream_id",
            "appid",
            "client_ip",
            "details",
        ],
        move |page| async move { Ok(lookup::audit(state, filter, &page).await?) },
        |a: &AuditRecord| {
            vec![
                rfc3339(a.occurred_at),
                a.position.to_string(),
                a.actor.clone(),
                a.action.clone(),
                a.target.clone(),
                a.stream_id.clone(),
                a.appid.clone().unwrap_or_default(),
                a.client_ip.clone().unwrap_or_default(),
                a.details.to_string(),
            ]
        },
    )
    .await
}

/// Times in exports: RFC 3339, UTC, as the API sends them (a spreadsheet converts).
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
