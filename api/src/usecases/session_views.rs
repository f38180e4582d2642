//! A user's open sessions as the user and admins see them: from the `sessions` read model,
//! without the ones that are over by rule (past a lifetime, older than the user's last block
//! or unblock), with the login's client IP and device opened.

use chrono::{DateTime, Utc};
use domain::{SealedPersonalData, SessionId, User, UserId};
use projections::{Page, PageRequest, SessionFilter, SessionRecord};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::ApiError;
use crate::state::AppState;

/// One open session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    #[schema(value_type = uuid::Uuid)]
    pub session_id: SessionId,
    /// The app the session was opened in.
    pub appid: Option<String>,
    /// What the login's user agent told: `{user_agent, platform, wechat_version}`.
    #[schema(value_type = Option<Object>)]
    pub device: Option<Value>,
    /// The client's IP address at login.
    pub client_ip: Option<String>,
    /// The login.
    pub created_at: DateTime<Utc>,
    /// The latest refresh; null if the session was never refreshed.
    pub last_refreshed_at: Option<DateTime<Utc>>,
    /// `GET /v1/me/sessions` only: whether this is the session of the access token asking.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub current: Option<bool>,
}

/// The user's sessions still in force at the service's now, newest first. `current`: the
/// caller's own session, when a user asks.
pub async fn open_sessions(
    state: &AppState,
    user_id: UserId,
    user: &User,
    current: Option<SessionId>,
    page: &PageRequest,
) -> Result<Page<SessionView>, ApiError> {
    if user.blocked || user.erased {
        // None works (see `Session::in_force`); the read model may not know yet.
        return Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        });
    }
    let now = state.clock.now();
    let lifetime = &state.session_lifetime;
    let filter = SessionFilter {
        started_after: user.session_cutoff,
        created_since: now - lifetime.max_age,
        active_since: now - lifetime.idle,
    };
    let page = state
        .read_models
        .open_sessions(user_id.as_uuid(), &filter, page)
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for record in page.items {
        items.push(view(state, user_id, record, current).await?);
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

async fn view(
    state: &AppState,
    user_id: UserId,
    record: SessionRecord,
    current: Option<SessionId>,
) -> Result<SessionView, ApiError> {
    let session_id = SessionId::from_uuid(record.session_id);
    let client_ip = open_login_field(state, user_id, record.client_ip.map(Value::String)).await?;
    Ok(SessionView {
        session_id,
        appid: record.appid,
        device: open_login_field(state, user_id, record.device).await?,
        client_ip: client_ip.and_then(|ip| ip.as_str().map(str::to_owned)),
        created_at: record.created_at,
        last_refreshed_at: record.refreshed_at,
        current: current.map(|c| c == session_id),
    })
}

/// A `UserLoggedIn` field as its payload carries it, made readable: clear values pass
/// through, sealed ones (`pd1.…`, under the user's data key) are opened. One that does not
/// open (an erased user's) shows as absent.
async fn open_login_field(
    state: &AppState,
    user_id: UserId,
    field: Option<Value>,
) -> Result<Option<Value>, ApiError> {
    let sealed = match field {
        Some(Value::String(text)) if text.starts_with("pd1.") => SealedPersonalData(text),
        clear => return Ok(clear),
    };
    match state
        .personal_data
        .open_all(state.store.as_ref(), user_id, &[&sealed])
        .await
    {
        Ok(mut opened) => Ok(opened.pop().flatten()),
        Err(err) => {
            tracing::warn!(%user_id, error = %err, "a session's login field does not open");
            Ok(None)
        }
    }
}
