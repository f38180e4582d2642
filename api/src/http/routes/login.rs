//! `POST /v1/wechat/login`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use domain::{AppId, WeChatCode};
use serde::{Deserialize, Serialize};

use super::me::UserView;
use crate::http::extract::{ApiJson, RequestContext};
use crate::http::ApiError;
use crate::state::AppState;
use crate::usecases::{login, sessions};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/wechat/login", post(wechat_login))
}

/// Fields arrive as strings and are parsed here, so each rule answers with its own message.
#[derive(Deserialize)]
struct LoginRequest {
    appid: String,
    code: String,
}

#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
}

#[derive(Serialize)]
struct LoginResponse {
    #[serde(flatten)]
    tokens: TokenResponse,
    user: UserView,
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

async fn wechat_login(
    State(state): State<AppState>,
    ctx: RequestContext,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    if let Some(ip) = ctx.client_ip {
        state
            .login_rate_limit
            .check(ip)
            .map_err(|wait| ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })?;
    }
    let appid = AppId::parse(&body.appid).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let code =
        WeChatCode::parse(&body.code).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;

    let logged_in = login::login(&state, &appid, &code, &ctx).await?;
    let tokens =
        sessions::issue_tokens(&state, logged_in.user_id, logged_in.session_id, &appid, 0)?;
    tracing::info!(%appid, user_id = %logged_in.user_id, new_user = logged_in.is_new_user, "login");
    Ok(Json(LoginResponse {
        tokens: tokens.into(),
        user: UserView {
            user_id: logged_in.user_id,
            openid: logged_in.openid,
            unionid: logged_in.unionid,
            is_new_user: logged_in.is_new_user,
            profile: None,
        },
    }))
}
