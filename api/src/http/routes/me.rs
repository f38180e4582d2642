//! `GET /v1/me`, `POST /v1/logout`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::{OpenId, Session, UnionId, UserId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::extract::{Authenticated, RequestContext};
use crate::http::responses::UserErrors;
use crate::http::ApiError;
use crate::state::AppState;
use crate::usecases::{sessions, views};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/logout", post(logout))
}

/// The user as the mini-program sees it: the same object in the login answer and `/v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    /// The openid in the app the token was issued for.
    #[schema(value_type = String)]
    pub openid: OpenId,
    /// Shared by every app of one Open Platform account; null when WeChat gives none.
    #[schema(value_type = Option<String>)]
    pub unionid: Option<UnionId>,
    /// Whether this session's login registered the user.
    pub is_new_user: bool,
    /// Shared profile data (nickname, avatar_url, gender, country, province, city, language);
    /// null until the user shares it, and again after withdrawing it.
    #[schema(value_type = Option<Object>)]
    pub profile: Option<serde_json::Value>,
    /// The bound phone number (phone_number, pure_phone_number, country_code); null unless
    /// bound.
    #[schema(value_type = Option<Object>)]
    pub phone: Option<serde_json::Value>,
}

/// The signed-in user
///
/// The same `user` object as the login answer, for the app the access token was issued for.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "`not_found`: the user has no account in this app"),
        UserErrors,
    )
)]
async fn me(auth: Authenticated) -> Result<Json<UserView>, ApiError> {
    let is_new_user = matches!(
        auth.session,
        Session::Active {
            is_new_user: true,
            ..
        }
    );
    let view = views::view_of(auth.user_id, &auth.user, &auth.appid, is_new_user)?;
    Ok(Json(view))
}

/// End the session
///
/// Its access tokens stop being accepted here and at introspection at once, and its refresh
/// token is spent.
#[utoipa::path(
    post,
    path = "/v1/logout",
    tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session has ended"),
        UserErrors,
    )
)]
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
