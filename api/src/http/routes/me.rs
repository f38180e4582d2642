//! `GET /v1/me`, `POST /v1/logout`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::{OpenId, Session, UnionId, UserId};
use serde::Serialize;

use crate::http::extract::{Authenticated, RequestContext};
use crate::http::ApiError;
use crate::state::AppState;
use crate::usecases::{sessions, streams};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/logout", post(logout))
}

/// The user as the mini-program sees it: the same object in the login answer and `/v1/me`.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub user_id: UserId,
    /// The openid in the app the token was issued for.
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    /// Whether this session's login registered the user.
    pub is_new_user: bool,
    /// Shared profile data; none until the user authorizes it.
    pub profile: Option<serde_json::Value>,
}

async fn me(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<UserView>, ApiError> {
    let (user, _) = streams::load_user(state.store.as_ref(), auth.user_id).await?;
    let openid = user
        .openid_for(&auth.appid)
        .cloned()
        .ok_or(ApiError::NotFound)?;
    let is_new_user = matches!(
        auth.session,
        Session::Active {
            is_new_user: true,
            ..
        }
    );
    Ok(Json(UserView {
        user_id: auth.user_id,
        openid,
        unionid: user.unionid,
        is_new_user,
        profile: None,
    }))
}

async fn logout(
    State(state): State<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
) -> Result<StatusCode, ApiError> {
    sessions::logout(
        &state,
        auth.session_id,
        &auth.session,
        auth.session_version,
        &ctx,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
