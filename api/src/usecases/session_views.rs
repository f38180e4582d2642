//! A user's open sessions as the user and admins see them: from the `sessions` read model,
//! without the ones that are over by rule (past a lifetime, older than the user's last block
//! or unblock), with the login's client IP and device opened.

use chrono::{DateTime, Utc};
use std::time::Duration;

use domain::{Session, SessionId, UserId};
use infra::personal_data::{is_sealed, UserKey};
use projections::{Page, PageRequest, SessionFilter, SessionRecord};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::UseCaseError;
use super::services::Services;
use super::streams::{load_user, LoadedUser};

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

/// How long `my_sessions` waits for the read model to hold the caller's own login.
const OWN_LOGIN_WAIT: Duration = Duration::from_secs(1);

/// The caller's sessions (`session` is theirs, checked in force), marking it `current`.
pub async fn my_sessions(
    state: &Services,
    session_id: SessionId,
    session: &Session,
    user: &LoadedUser,
    page: &PageRequest,
) -> Result<Page<SessionView>, UseCaseError> {
    let Session::Active {
        user_id, started, ..
    } = session
    else {
        return Err(UseCaseError::SessionEnded);
    };
    // Read your own login: the list comes from a read model a few milliseconds behind the log,
    // and a client that asks right after logging in expects its own session in it.
    let caught_up = state
        .read_models
        .wait_for_sessions(started.position, OWN_LOGIN_WAIT)
        .await?;
    if !caught_up {
        tracing::warn!("sessions read model behind: listing without the caller's login");
    }
    open_sessions(state, *user_id, user, Some(session_id), page).await
}

/// A user's sessions, as an administrator sees them; `NotFound` for a user that never was.
pub async fn user_sessions(
    state: &Services,
    user_id: UserId,
    page: &PageRequest,
) -> Result<Page<SessionView>, UseCaseError> {
    let user = load_user(state, user_id).await?;
    if !user.user.is_registered() {
        return Err(UseCaseError::NotFound);
    }
    open_sessions(state, user_id, &user, None, page).await
}

/// The user's sessions still in force at the service's now, newest first. `current`: the
/// caller's own session, when a user asks. The login fields open with the user's key as it was
/// loaded with them.
async fn open_sessions(
    state: &Services,
    user_id: UserId,
    loaded: &LoadedUser,
    current: Option<SessionId>,
    page: &PageRequest,
) -> Result<Page<SessionView>, UseCaseError> {
    let LoadedUser { user, key, .. } = loaded;
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
    let items = page
        .items
        .into_iter()
        .map(|record| view(user_id, key.as_ref(), record, current))
        .collect();
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

fn view(
    user_id: UserId,
    key: Option<&UserKey>,
    record: SessionRecord,
    current: Option<SessionId>,
) -> SessionView {
    let session_id = SessionId::from_uuid(record.session_id);
    let client_ip = open_login_field(user_id, key, record.client_ip.map(Value::String));
    SessionView {
        session_id,
        appid: record.appid,
        device: open_login_field(user_id, key, record.device),
        client_ip: client_ip.and_then(|ip| ip.as_str().map(str::to_owned)),
        created_at: record.created_at,
        last_refreshed_at: record.refreshed_at,
        current: current.map(|c| c == session_id),
    }
}

/// A `UserLoggedIn` field as its payload carries it, made readable: clear values pass
/// through, sealed ones (`pd1.…`, under the user's data key) are opened. One that does not
/// open (an erased user's) shows as absent.
fn open_login_field(user_id: UserId, key: Option<&UserKey>, field: Option<Value>) -> Option<Value> {
    let sealed = match field {
        Some(Value::String(text)) if is_sealed(&text) => text,
        clear => return clear,
    };
    match key?.open(&sealed) {
        Ok(opened) => Some(opened),
        Err(err) => {
            tracing::warn!(%user_id, error = %err, "a session's login field does not open");
            None
        }
    }
}
