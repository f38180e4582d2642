//! The signed body of a cloud-function request (`POST /v1/wechat/cloud-login`), as an
//! extractor: the body is only handed over once its HMAC signature, under the app's
//! cloud-login secret, its timestamp (against the service's injected clock) and its single-use
//! nonce have been checked.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use domain::AppId;
use infra::signed_request::{self, MAX_CLOCK_SKEW_SECS};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::client_ip::ClientIp;
use super::extract::is_json;
use super::ApiError;
use crate::http::state::AppState;

pub const TIMESTAMP_HEADER: &str = "x-identity-timestamp";
pub const NONCE_HEADER: &str = "x-identity-nonce";
pub const SIGNATURE_HEADER: &str = "x-identity-signature";

/// A body that names the app whose secret signs it.
pub trait SignedByApp {
    fn appid(&self) -> &str;
}

/// A JSON body whose signature, timestamp and nonce were checked; `appid` is the app it names.
pub struct CloudSigned<T> {
    pub appid: AppId,
    pub body: T,
}

impl<T: DeserializeOwned + SignedByApp + Send> FromRequest<AppState> for CloudSigned<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let Ok(ClientIp(client_ip)) = ClientIp::from_request_parts(&mut parts, state).await;
        let headers = parts.headers.clone();
        // An over-limit body is `http::body_limit`'s 413, whatever this says.
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
        if !is_json(&headers) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body: T = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::InvalidRequest(format!("the body is not valid: {e}")))?;
        let appid = AppId::parse(body.appid())?;
        if !state.apps.contains_key(&appid) {
            return Err(ApiError::UnknownApp);
        }
        let secret = state
            .cloud_login_secrets
            .get(&appid)
            .ok_or(ApiError::Forbidden(
                "cloud login is not enabled for this app",
            ))?;
        let signed = Signed::from_headers(&headers)?;
        signed.verify(state, client_ip, secret, &bytes)?;
        signed.check_fresh(state, &appid).await?;
        Ok(Self { appid, body })
    }
}

/// The signature headers.
struct Signed<'a> {
    timestamp: i64,
    nonce: &'a str,
    signature: &'a str,
}

impl<'a> Signed<'a> {
    fn from_headers(headers: &'a HeaderMap) -> Result<Self, ApiError> {
        let text = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(ApiError::Unauthorized("missing signature headers"))
        };
        let timestamp = text(TIMESTAMP_HEADER)?.parse().map_err(|_| {
            ApiError::InvalidRequest("x-identity-timestamp must be Unix seconds".into())
        })?;
        let nonce = text(NONCE_HEADER)?;
        if !signed_request::valid_nonce(nonce) {
            return Err(ApiError::InvalidRequest(
                "x-identity-nonce must be 16 to 64 of [A-Za-z0-9_-]".into(),
            ));
        }
        Ok(Self {
            timestamp,
            nonce,
            signature: text(SIGNATURE_HEADER)?,
        })
    }

    /// Charged before the signature is checked, so bad signatures sent all at once get no more
    /// 401s than the budget; a right one always passes (`rate_limit::auth_failures`).
    fn verify(
        &self,
        state: &AppState,
        client_ip: Option<std::net::IpAddr>,
        secret: &SecretString,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let secret = secret.expose_secret();
        state.auth_failures.judge(client_ip, "bad signature", || {
            signed_request::verify(secret, self.timestamp, self.nonce, body, self.signature)
        })
    }

    /// Within the allowed skew of the service's clock, and the nonce never seen before (it is
    /// remembered for twice the skew, past which the timestamp refuses a replay anyway).
    async fn check_fresh(&self, state: &AppState, appid: &AppId) -> Result<(), ApiError> {
        let now = state.clock.now();
        // `abs_diff`: a timestamp near `i64::MIN` must not wrap the difference into range.
        if now.timestamp().abs_diff(self.timestamp) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
            return Err(ApiError::Unauthorized(
                "the request's timestamp is too far from ours: check the clock",
            ));
        }
        let forget_after = now + chrono::Duration::seconds(2 * MAX_CLOCK_SKEW_SECS);
        let scope = format!("cloud-login:{appid}");
        if !state
            .store
            .use_nonce(&scope, self.nonce, now, forget_after)
            .await?
        {
            return Err(ApiError::Unauthorized("replayed request"));
        }
        Ok(())
    }
}
