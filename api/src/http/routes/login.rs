//! `POST /v1/wechat/login`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use domain::{AppId, WeChatCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::me::UserView;
use crate::http::extract::{ApiJson, RequestContext};
use crate::http::responses::{ConflictError, Internal, JsonBodyErrors};
use crate::http::ApiError;
use crate::state::AppState;
use crate::usecases::{login, sessions, views};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/wechat/login", post(wechat_login))
}

/// A `wx.login()` code to exchange for tokens.
// Fields arrive as strings and are parsed here, so each rule answers with its own message.
#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    /// The mini-program's appid: `wx` followed by 16 hex characters.
    #[schema(pattern = "^wx[0-9a-fA-F]{16}$", example = "wx0123456789abcdef")]
    appid: String,
    /// The code from `wx.login()`: opaque, 1 to 256 printable ASCII characters.
    #[schema(min_length = 1, max_length = 256, pattern = "^[!-~]+$")]
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (EdDSA) with `sub` = user id, `sid` = session id, `appid`, `iss`, `iat`, `exp`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; rotates on every refresh. Presenting a used one revokes the session.
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    #[serde(flatten)]
    pub tokens: TokenResponse,
    pub user: UserView,
}

impl From<sessions::IssuedTokens> for TokenResponse {
    fn from(t: sessions::IssuedTokens) -> Self {
        Self {
            access_token: t.access_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_token: t.refresh_token,
        }
    }
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
        JsonBodyErrors,
        ConflictError,
        Internal,
    )
)]
async fn wechat_login(
    State(state): State<AppState>,
    ctx: RequestContext,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    if let Some(ip) = ctx.client_ip {
        state
            .login_rate_limit
            .check(ip)
            .map_err(ApiError::rate_limited)?;
    }
    let appid = AppId::parse(&body.appid).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let code =
        WeChatCode::parse(&body.code).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;

    let logged_in = login::login(&state, &appid, &code, &ctx).await?;
    tracing::info!(%appid, user_id = %logged_in.user_id, new_user = logged_in.is_new_user, "login");
    Ok(Json(LoginResponse::new(&state, &appid, logged_in).await?))
}

impl LoginResponse {
    /// Tokens for the new session and the user as the mini-program sees them.
    pub async fn new(
        state: &AppState,
        appid: &AppId,
        logged_in: login::LoggedIn,
    ) -> Result<Self, ApiError> {
        let tokens =
            sessions::issue_tokens(state, logged_in.user_id, logged_in.session_id, appid, 0)?;
        let user = views::view_of(
            logged_in.user_id,
            &logged_in.user,
            appid,
            logged_in.is_new_user,
        )?;
        Ok(Self {
            tokens: tokens.into(),
            user,
        })
    }
}
