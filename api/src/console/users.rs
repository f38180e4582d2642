//! The users pages: search, and one user's accounts, profile, sessions and timeline.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::{AppId, UserId};
use projections::{LoginFilter, PageRequest, UserRecord};
use serde::Deserialize;
use serde_json::Value;

use super::i18n::Lang;
use super::render::{page, Chrome};
use super::session::ConsoleSession;
use crate::http::state::AppState;
use crate::http::ApiError;
use crate::usecases::lookup::{self, UserSearch};
use crate::usecases::session_views::{self, SessionView};
use crate::usecases::UseCaseError;

/// Users a search page shows.
const PAGE_SIZE: u32 = 50;
/// A search term longer than this is no identifier of ours.
const MAX_QUERY_CHARS: usize = 256;
/// The newest logins a timeline shows.
const TIMELINE_LOGINS: u32 = 200;
/// The newest stream events a timeline shows (a user's stream stays short: logins are not in it).
const TIMELINE_EVENTS: usize = 500;

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

/// One row of the results.
pub struct UserRow {
    pub user_id: String,
    pub status: String,
    pub accounts: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<UserRecord> for UserRow {
    fn from(user: UserRecord) -> Self {
        Self {
            user_id: user.user_id.to_string(),
            status: user.status,
            accounts: user
                .accounts
                .into_iter()
                .map(|a| match a.openid {
                    Some(openid) => format!("{} / {openid}", a.appid),
                    None => a.appid,
                })
                .collect(),
            created_at: user.created_at,
            last_login_at: user.last_login_at,
        }
    }
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    chrome: Chrome,
    q: String,
    /// Each status the filter offers, and whether it is the one chosen.
    statuses: Vec<(&'static str, bool)>,
    rows: Vec<UserRow>,
    /// The next page's URL, when there is one.
    next: Option<String>,
}

/// `GET /console/users?q=&status=&cursor=`: `q` is a user id, a phone number (`+86…`), an
/// `appid:openid` pair, an openid (in any app) or a unionid.
pub async fn search(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
    Query(query): Query<SearchQuery>,
) -> Result<Response, ApiError> {
    let q = query.q.unwrap_or_default().trim().to_owned();
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "the search is at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let status = query.status.filter(|s| !s.is_empty());
    if status
        .as_deref()
        .is_some_and(|s| !matches!(s, "active" | "blocked" | "erased"))
    {
        return Err(ApiError::InvalidRequest(
            "status must be active, blocked or erased".into(),
        ));
    }
    let page_request = PageRequest {
        limit: PAGE_SIZE,
        cursor: query.cursor.filter(|c| !c.is_empty()),
    };
    let (rows, next_cursor) = find(&state, &q, status.clone(), &page_request).await?;
    let next = next_cursor.map(|cursor| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &q)
            .append_pair("status", status.as_deref().unwrap_or(""))
            .append_pair("cursor", &cursor)
            .finish();
        format!("/console/users?{query}")
    });
    page(&UsersPage {
        chrome: Chrome::of(&session, lang, "users"),
        q,
        statuses: ["active", "blocked", "erased"]
            .into_iter()
            .map(|s| (s, status.as_deref() == Some(s)))
            .collect(),
        rows,
        next,
    })
}

/// The users `q` names, with the next page's cursor (searches by identifier find few users and
/// come in one page).
async fn find(
    state: &AppState,
    q: &str,
    status: Option<String>,
    page_request: &PageRequest,
) -> Result<(Vec<UserRow>, Option<String>), ApiError> {
    let by_status = |user: &UserRecord| status.as_deref().is_none_or(|s| user.status == s);
    if q.is_empty() {
        let search = UserSearch {
            status,
            ..UserSearch::default()
        };
        let page = lookup::find_users(state, search, page_request).await?;
        return Ok((
            page.items.into_iter().map(UserRow::from).collect(),
            page.next_cursor,
        ));
    }
    if let Ok(id) = UserId::parse(q) {
        let found = match lookup::user(state, id).await {
            Ok(user) => Some(user),
            Err(UseCaseError::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
        let rows = found
            .filter(by_status)
            .map(UserRow::from)
            .into_iter()
            .collect();
        return Ok((rows, None));
    }
    let all = PageRequest::first(PAGE_SIZE);
    let searches: Vec<UserSearch> = if let Some(digits) = q.strip_prefix('+') {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            Vec::new()
        } else {
            vec![UserSearch {
                phone: Some(q.to_owned()),
                ..UserSearch::default()
            }]
        }
    } else if let Some((appid, openid)) = q
        .split_once([':', '/'])
        .filter(|(appid, _)| AppId::parse(appid.trim()).is_ok())
    {
        vec![UserSearch {
            appid: Some(appid.trim().to_owned()),
            openid: Some(openid.trim().to_owned()),
            ..UserSearch::default()
        }]
    } else {
        vec![
            UserSearch {
                openid: Some(q.to_owned()),
                ..UserSearch::default()
            },
            UserSearch {
                unionid: Some(q.to_owned()),
                ..UserSearch::default()
            },
        ]
    };
    let mut rows: Vec<UserRow> = Vec::new();
    for mut search in searches {
        search.status.clone_from(&status);
        for user in lookup::find_users(state, search, &all).await?.items {
            if !rows.iter().any(|r| r.user_id == user.user_id.to_string()) {
                rows.push(user.into());
            }
        }
    }
    Ok((rows, None))
}

/// One entry of a user's timeline: an event of their stream, or a login.
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub position: i64,
    pub event_type: String,
    pub actor: String,
    pub details: String,
}

/// An open session, as the user page lists it.
pub struct SessionRow {
    pub session_id: String,
    pub appid: String,
    pub device: String,
    pub client_ip: String,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
}

impl From<SessionView> for SessionRow {
    fn from(view: SessionView) -> Self {
        Self {
            session_id: view.session_id.to_string(),
            appid: view.appid.unwrap_or_default(),
            device: view
                .device
                .as_ref()
                .and_then(|d| d.get("user_agent"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            client_ip: view.client_ip.unwrap_or_default(),
            created_at: view.created_at,
            last_refreshed_at: view.last_refreshed_at,
        }
    }
}

#[derive(Template)]
#[template(path = "console/user.html")]
struct UserPage {
    chrome: Chrome,
    user: UserRow,
    unionid: Option<String>,
    profile: Vec<(String, String)>,
    sessions: Vec<SessionRow>,
    timeline: Vec<TimelineEntry>,
    /// Whether older entries were left out.
    timeline_cut: bool,
}

#[derive(Debug, Deserialize)]
pub struct UserPath {
    id: String,
}

impl UserPath {
    pub fn parse(&self) -> Result<UserId, ApiError> {
        UserId::parse(&self.id)
            .map_err(|_| ApiError::InvalidRequest("the user id must be a UUID".into()))
    }
}

/// `GET /console/users/{id}`: the profile is opened for the admin (never logged).
pub async fn user(
    State(state): State<AppState>,
    session: ConsoleSession,
    lang: Lang,
    Path(path): Path<UserPath>,
) -> Result<Response, ApiError> {
    let id = path.parse()?;
    let record = lookup::user(&state, id).await?;
    let unionid = record.unionid.clone();
    let profile = profile_fields(record.profile.as_ref());
    let sessions = session_views::user_sessions(&state, id, &PageRequest::first(PAGE_SIZE))
        .await?
        .items
        .into_iter()
        .map(SessionRow::from)
        .collect();
    let (timeline, timeline_cut) = timeline(&state, id).await?;
    page(&UserPage {
        chrome: Chrome::of(&session, lang, "users"),
        user: record.into(),
        unionid,
        profile,
        sessions,
        timeline,
        timeline_cut,
    })
}

/// The opened profile as label and value pairs, in the order the fields came.
fn profile_fields(profile: Option<&Value>) -> Vec<(String, String)> {
    let Some(Value::Object(fields)) = profile else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), shown)
        })
        .collect()
}

/// Every event of the user's stream and their logins, newest first.
async fn timeline(state: &AppState, id: UserId) -> Result<(Vec<TimelineEntry>, bool), ApiError> {
    let stream = state.store.load_stream(&id.stream()).await?;
    let mut cut = stream.len() > TIMELINE_EVENTS;
    let mut entries: Vec<TimelineEntry> = stream
        .into_iter()
        .rev()
        .take(TIMELINE_EVENTS)
        .map(|event| TimelineEntry {
            at: event.occurred_at,
            position: event.position,
            details: event
                .metadata
                .appid
                .as_ref()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            actor: event.metadata.actor.to_string(),
            event_type: event.event_type,
        })
        .collect();
    let logins = lookup::logins(
        state,
        Some(id),
        &LoginFilter::default(),
        &PageRequest::first(TIMELINE_LOGINS),
    )
    .await?;
    cut |= logins.next_cursor.is_some();
    entries.extend(logins.items.into_iter().map(|login| {
        let details = [login.appid, login.client_ip, login.device]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
        TimelineEntry {
            at: login.occurred_at,
            position: login.position,
            event_type: "UserLoggedIn".into(),
            actor: format!("user:{}", login.user_id),
            details,
        }
    }));
    entries.sort_by_key(|e| std::cmp::Reverse((e.at, e.position)));
    Ok((entries, cut))
}
