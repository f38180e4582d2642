//! `POST /v1/wechat/login`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use domain::{AppId, WeChatCode};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::http::extract::{ApiJson, RequestContext};
use crate::http::responses::PublicWriteErrors;
use crate::http::state::AppState;
use crate::http::values;
use crate::http::ApiError;
use crate::usecases::login;
use crate::usecases::views::LoginResponse;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/wechat/login", post(wechat_login))
}

/// A `wx.login()` code to exchange for tokens.
// Fields arrive as strings and are parsed here, so each rule answers with its own message.
#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    /// The mini-program's appid.
    #[schema(value_type = values::AppId)]
    appid: String,
    /// The code from `wx.login()`.
    #[schema(value_type = values::WeChatCode)]
    code: String,
}

/// Log in with a `wx.login()` code
///
/// Exchanges the code with WeChat (`code2Session`), registers the user on first sight and
/// starts a session. Rate-limited per client IP.
#[utoipa::path(
    post,
    path = "/v1/wechat/login",
    tag = "login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in: tokens and the user", body = LoginResponse),
        (status = 400, description = "`invalid_request`: malformed JSON or a field breaking its \
            rule (the detail names it); `unknown_app`: the appid is not configured; \
            `invalid_code`: WeChat refused the code (40029 invalid or expired, 40163 already used)"),
        (status = 403, description = "`high_risk_user`: WeChat refused the login as high risk \
            (40226); `user_blocked`: an administrator blocked the user"),
        (status = 429, description = "`rate_limited`: our per-IP login limit, or WeChat's (45011)",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`wechat_unavailable`: WeChat is busy (-1 after retries), \
            timed out or unreachable",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        PublicWriteErrors,
    )
)]
async fn wechat_login(
    State(state): State<AppState>,
    ctx: RequestContext,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let answer = log_in(&state, &ctx, &body).await;
    let outcome = answer.as_ref().map(|_| ()).map_err(ApiError::code);
    state.metrics.login(&body.appid, outcome);
    Ok(Json(answer?))
}

async fn log_in(
    state: &AppState,
    ctx: &RequestContext,
    body: &LoginRequest,
) -> Result<LoginResponse, ApiError> {
    if let Some(ip) = ctx.client_ip {
        state
            .login_rate_limit
            .check(ip)
            .map_err(ApiError::rate_limited)?;
    }
    let (appid, code) = (AppId::parse(&body.appid)?, WeChatCode::parse(&body.code)?);
    Ok(login::login(state, &appid, &code, &ctx.anonymous()).await?)
}
