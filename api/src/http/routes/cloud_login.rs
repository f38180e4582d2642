//! `POST /v1/wechat/cloud-login`: for teams on WeChat cloud development. Their cloud function
//! forwards `cloud.getWXContext()` (already authenticated by WeChat) in a request signed with
//! the app's shared secret; see `clients/cloudfunction/login`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::routing::post;
use axum::{Json, Router};
use domain::{AppId, OpenId, UnionId, UnionIdSource};
use infra::signed_request::{self, MAX_CLOCK_SKEW_SECS};
use secrecy::ExposeSecret;
use serde::Deserialize;
use utoipa::ToSchema;

use super::login::LoginResponse;
use crate::http::extract::RequestContext;
use crate::http::responses::{Internal, JsonBodyErrors};
use crate::http::ApiError;
use crate::state::AppState;
use crate::usecases::login::{self, WeChatIdentity};

pub const TIMESTAMP_HEADER: &str = "x-identity-timestamp";
pub const NONCE_HEADER: &str = "x-identity-nonce";
pub const SIGNATURE_HEADER: &str = "x-identity-signature";

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/wechat/cloud-login", post(cloud_login))
}

/// `getWXContext()`'s fields, as the shipped cloud function sends them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudLoginRequest {
    /// `APPID`
    #[schema(example = "wx0123456789abcdef")]
    appid: String,
    /// `OPENID`
    openid: String,
    /// `UNIONID`, when the app is bound to an Open Platform account.
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
        ("x-identity-nonce" = String, Header, description = "16 to 64 of [A-Za-z0-9_-], single use"),
        ("x-identity-signature" = String, Header, description = "hex HMAC-SHA256 (see above)"),
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
        JsonBodyErrors,
        Internal,
    )
)]
async fn cloud_login(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LoginResponse>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let request: CloudLoginRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("the body is not valid: {e}")))?;
    let appid =
        AppId::parse(&request.appid).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    if !state.apps.contains_key(&appid) {
        return Err(ApiError::UnknownApp);
    }
    let secret = state
        .cloud_login_secrets
        .get(&appid)
        .ok_or(ApiError::Forbidden(
            "cloud login is not enabled for this app",
        ))?;

    let header_text = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized("missing signature headers"))
    };
    let timestamp: i64 = header_text(TIMESTAMP_HEADER)?.parse().map_err(|_| {
        ApiError::InvalidRequest("x-identity-timestamp must be Unix seconds".into())
    })?;
    let nonce = header_text(NONCE_HEADER)?;
    if !signed_request::valid_nonce(nonce) {
        return Err(ApiError::InvalidRequest(
            "x-identity-nonce must be 16 to 64 of [A-Za-z0-9_-]".into(),
        ));
    }
    let signature = header_text(SIGNATURE_HEADER)?;
    // Charged before the signature is checked, so bad signatures sent all at once get no more
    // 401s than the budget; a right one always passes (`rate_limit::auth_failures`).
    let attempt = state.auth_failures.begin(ctx.client_ip);
    if !signed_request::verify(secret.expose_secret(), timestamp, nonce, &body, signature) {
        state
            .auth_failures
            .failed(attempt)
            .map_err(ApiError::rate_limited)?;
        return Err(ApiError::Unauthorized("bad signature"));
    }
    state.auth_failures.succeeded(attempt);
    let now = state.clock.now();
    if (now.timestamp() - timestamp).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(ApiError::Unauthorized(
            "the request's timestamp is too far from ours: check the clock",
        ));
    }
    let forget_after = now + chrono::Duration::seconds(2 * MAX_CLOCK_SKEW_SECS);
    let fresh = state
        .store
        .use_nonce(&format!("cloud-login:{appid}"), nonce, now, forget_after)
        .await?;
    if !fresh {
        return Err(ApiError::Unauthorized("replayed request"));
    }

    let identity = WeChatIdentity {
        openid: OpenId::parse(&request.openid)
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
        unionid: request
            .unionid
            .filter(|u| !u.is_empty())
            .map(|u| UnionId::parse(&u))
            .transpose()
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
        source: UnionIdSource::CloudContext,
    };
    let logged_in = login::record_login(&state, &appid, &identity, None, &ctx).await?;
    tracing::info!(%appid, user_id = %logged_in.user_id, new_user = logged_in.is_new_user, "cloud login");
    Ok(Json(LoginResponse::new(&state, &appid, logged_in).await?))
}
