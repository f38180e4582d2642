//! `GET /v1/me`, `POST /v1/logout`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::Session;

use crate::http::extract::Authenticated;
use crate::http::responses::{UserErrors, UserWriteErrors};
use crate::http::state::AppState;
use crate::http::ApiError;
use crate::usecases::sessions;
use crate::usecases::views::{self, UserView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/logout", post(logout))
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
        UserWriteErrors,
    )
)]
async fn logout(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<StatusCode, ApiError> {
    let Authenticated {
        session_id,
        session,
        session_version,
        ctx,
        ..
    } = auth;
    sessions::logout(&state, session_id, session, session_version, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}
