//! `POST /v1/wechat/cloud-login`: for teams on WeChat cloud development. Their cloud function
//! forwards `cloud.getWXContext()` (already authenticated by WeChat) in a request signed with
//! the app's shared secret; see `clients/cloudfunction/login`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use domain::{AppId, OpenId, UnionId, UnionIdSource};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::http::cloud_signature::{CloudSigned, SignedByApp};
use crate::http::extract::RequestContext;
use crate::http::responses::PublicWriteErrors;
use crate::http::state::AppState;
use crate::http::values;
use crate::http::ApiError;
use crate::usecases::login::{self, WeChatIdentity};
use crate::usecases::views::LoginResponse;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/wechat/cloud-login", post(cloud_login))
}

/// `getWXContext()`'s fields, as the shipped cloud function sends them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudLoginRequest {
    /// `APPID`
    #[schema(value_type = values::AppId)]
    appid: String,
    /// `OPENID`
    #[schema(value_type = values::WeChatId)]
    openid: String,
    /// `UNIONID`, when the app is bound to an Open Platform account (empty: none).
    #[schema(value_type = Option<values::WeChatId>)]
    unionid: Option<String>,
}

/// Log in from a WeChat cloud function
///
/// The body is signed: `X-Identity-Signature` = hex HMAC-SHA256, under the app's
/// cloud-login secret, of `"{X-Identity-Timestamp}\n{X-Identity-Nonce}\n{body}"`. The
/// timestamp (Unix seconds) must be within 5 minutes of ours and the nonce (16 to 64 of
/// `[A-Za-z0-9_-]`) unused: a replayed request is refused.
#[utoipa::path(
    post,
    path = "/v1/wechat/cloud-login",
    tag = "login",
    request_body = CloudLoginRequest,
    params(
        ("x-identity-timestamp" = i64, Header, description = "Unix seconds"),
        ("x-identity-nonce" = values::Nonce, Header, description = "16 to 64 of [A-Za-z0-9_-], single use"),
        ("x-identity-signature" = String, Header, pattern = "^[0-9a-fA-F]{64}$",
            description = "hex HMAC-SHA256 (see above)"),
    ),
    responses(
        (status = 200, description = "Logged in: tokens and the user", body = LoginResponse),
        (status = 400, description = "`invalid_request`: malformed JSON, a bad field or header; \
            `unknown_app`: the appid is not configured"),
        (status = 401, description = "`unauthorized`: bad signature, stale timestamp or a \
            replayed nonce"),
        (status = 403, description = "`forbidden`: cloud login is not enabled for this app; \
            `user_blocked`: an administrator blocked the user"),
        (status = 429, description = "`rate_limited`: this client sent too many bad signatures; wait",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        PublicWriteErrors,
    )
)]
async fn cloud_login(
    State(state): State<AppState>,
    ctx: RequestContext,
    CloudSigned { appid, body }: CloudSigned<CloudLoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let answer = log_in(&state, &ctx, &appid, body).await;
    let outcome = answer.as_ref().map(|_| ()).map_err(ApiError::code);
    state.metrics.login(appid.as_str(), outcome);
    Ok(Json(answer?))
}

async fn log_in(
    state: &AppState,
    ctx: &RequestContext,
    appid: &AppId,
    body: CloudLoginRequest,
) -> Result<LoginResponse, ApiError> {
    let identity = WeChatIdentity {
        openid: OpenId::parse(&body.openid)?,
        unionid: body
            .unionid
            .filter(|u| !u.is_empty())
            .map(|u| UnionId::parse(&u))
            .transpose()?,
        source: UnionIdSource::CloudContext,
    };
    Ok(login::cloud_login(state, appid, &identity, &ctx.anonymous()).await?)
}

impl SignedByApp for CloudLoginRequest {
    fn appid(&self) -> &str {
        &self.appid
    }
}
