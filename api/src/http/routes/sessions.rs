//! Session management: the user's own (`GET /v1/me/sessions`, `DELETE
//! /v1/me/sessions/{session_id}`) and an administrator's (`GET /v1/admin/users/{id}/sessions`,
//! `POST /v1/admin/users/{id}/sessions/revoke`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use domain::{SessionId, UserId};
use projections::Page;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::UserPath;
use crate::http::api_key::{AdminRead, Scoped};
use crate::http::extract::{AdminAction, ApiJson, Authenticated};
use crate::http::query::{ApiQuery, PageParams};
use crate::http::responses::{
    AdminActionErrors, KeyErrors, NoSuchUser, UserErrors, UserWriteErrors,
};
use crate::http::state::AppState;
use crate::http::values;
use crate::http::ApiError;
use crate::usecases::session_views::{self, SessionView};
use crate::usecases::{admin, revocation};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/sessions", get(my_sessions))
        .route("/v1/me/sessions/{session_id}", delete(end_my_session))
        .route("/v1/admin/users/{id}/sessions", get(user_sessions))
        .route(
            "/v1/admin/users/{id}/sessions/revoke",
            post(revoke_user_sessions),
        )
}

/// My open sessions
#[utoipa::path(
    get,
    path = "/v1/me/sessions",
    tag = "me",
    params(PageParams),
    security(("bearer" = [])),
    description = "Every session of the signed-in user still in force (not logged out, \
        revoked or past its lifetime), newest first: app, device, client IP, when it began \
        and was last refreshed; `current` marks the caller's own. Read from a read model, \
        typically a few milliseconds behind.",
    responses(
        (status = 200, description = "A page of sessions", body = Page<SessionView>),
        (status = 400, description = "`invalid_request`: an unknown parameter, a bad limit or cursor"),
        UserErrors,
    )
)]
async fn my_sessions(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<SessionView>>, ApiError> {
    let page = page.parse()?;
    let Authenticated {
        session_id,
        session,
        user,
        ..
    } = &auth;
    let sessions = session_views::my_sessions(&state, *session_id, session, user, &page).await?;
    Ok(Json(sessions))
}

/// End one of my sessions
#[utoipa::path(
    delete,
    path = "/v1/me/sessions/{session_id}",
    tag = "me",
    params(("session_id" = uuid::Uuid, Path, description = "A session of the signed-in user")),
    security(("bearer" = [])),
    description = "Revokes one of the signed-in user's sessions (`SessionRevoked`, reason \
        `user_action`): its refresh and access tokens stop working at once. The caller's own \
        session may be named too. Ending an ended session changes nothing.",
    responses(
        (status = 204, description = "The session has ended"),
        (status = 400, description = "`invalid_request`: the session id is not a UUID"),
        (status = 404, description = "`not_found`: no such session of this user (another \
            user's session answers the same)"),
        UserWriteErrors,
    )
)]
async fn end_my_session(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(session_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let session_id = SessionId::parse(&session_id)
        .map_err(|_| ApiError::InvalidRequest("the session id must be a UUID".into()))?;
    revocation::revoke_own_session(&state, auth.user_id, session_id, &auth.ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's open sessions
#[utoipa::path(
    get,
    path = "/v1/admin/users/{id}/sessions",
    tag = "admin",
    params(UserPath, PageParams),
    security(("api_key" = ["admin:read"])),
    description = "Every session of the user still in force, newest first: app, device, \
        client IP, when it began and was last refreshed. Empty for a blocked or erased user. \
        Requires an API key with the `admin:read` scope.",
    responses(
        (status = 200, description = "A page of sessions", body = Page<SessionView>),
        (status = 400, description = "`invalid_request`: the user id is not a UUID, an unknown \
            parameter, a bad limit or cursor"),
        KeyErrors<AdminRead>,
        NoSuchUser,
    )
)]
async fn user_sessions(
    State(state): State<AppState>,
    _: Scoped<AdminRead>,
    Path(id): Path<UserPath>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<SessionView>>, ApiError> {
    let id = id.parse()?;
    let page = page.parse()?;
    let sessions = session_views::user_sessions(&state, id, &page).await?;
    Ok(Json(sessions))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSessionsRequest {
    /// Why. Personal data: it is kept in the events only, as each `SessionRevoked`'s `note`,
    /// and shown redacted.
    #[schema(value_type = values::Reason)]
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSessions {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// The sessions this request ended (empty when none was open).
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub revoked: Vec<SessionId>,
}

/// Revoke every session of a user
#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/sessions/revoke",
    tag = "admin",
    params(UserPath),
    request_body = RevokeSessionsRequest,
    security(("api_key" = ["admin:write"])),
    description = "Ends every open session of the user (`SessionRevoked`, reason \
        `admin_action`, the reason as its `note`, actor `admin:{key id}`): refresh and access \
        tokens stop working at once. The user may log in again. Requires an API key with the \
        `admin:write` scope.",
    responses(
        (status = 200, description = "The sessions ended", body = RevokedSessions),
        (status = 409, description = "`conflict`: the user was erased, or a session changed concurrently; retry"),
        AdminActionErrors,
    )
)]
async fn revoke_user_sessions(
    State(state): State<AppState>,
    AdminAction(ctx): AdminAction,
    Path(id): Path<UserPath>,
    ApiJson(body): ApiJson<RevokeSessionsRequest>,
) -> Result<Json<RevokedSessions>, ApiError> {
    let id = id.parse()?;
    let revoked = admin::revoke_sessions(&state, id, &body.reason, &ctx).await?;
    Ok(Json(RevokedSessions {
        user_id: id,
        revoked,
    }))
}
