//! One error type for the API, answered as RFC 9457 `application/problem+json` with a stable
//! `code`. Unexpected failures become an opaque 500; their detail goes to the log only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::AppId;
use infra::wechat::WeChatError;
use serde::Serialize;

use crate::usecases::error::WeChatCall;
use crate::usecases::UseCaseError;

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the detail says which field and rule.
    #[error("{0}")]
    InvalidRequest(String),
    /// 400: the appid is well-formed but not configured here.
    #[error("this appid is not configured")]
    UnknownApp,
    /// 400: WeChat refused the login code (40029 invalid or expired, 40163 already used).
    #[error("the login code is invalid, expired or already used: call wx.login() again")]
    InvalidCode,
    /// 400: WeChat refused the phone-number button code (40029: invalid, expired or used).
    #[error("the phone-number code is invalid, expired or already used: ask the user again")]
    InvalidPhoneCode,
    /// 403: WeChat intercepted the login as high risk (40226).
    #[error("WeChat refused this login as high risk")]
    HighRiskUser,
    /// 403: the user is blocked by an administrator.
    #[error("this user is blocked")]
    UserBlocked,
    /// 401: missing, invalid or expired credentials, or an ended session.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404.
    #[error("not found")]
    NotFound,
    /// 404, saying what is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// 400: WeChat's encrypted user data failed a check; `hint()` says when a stale
    /// `session_key` is the likely cause.
    #[error("{0}")]
    UserData(infra::wechat::user_data::UserDataError),
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: a concurrent change won; retrying may succeed.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 422: WeChat's content check found the content risky; nothing was stored.
    #[error("WeChat's content check rejected the {0}: choose another")]
    ContentRejected(&'static str),
    /// 415: the body is not `application/json`.
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 415: an upload that is not an image we read (the detail says which ones).
    #[error("{0}")]
    UnsupportedImage(String),
    /// 429: ours (per client IP) or WeChat's (45011).
    #[error("too many requests: retry later")]
    RateLimited { retry_after_secs: u64 },
    /// 429: this API key already holds its share of open event streams.
    #[error("this API key already has {max} open event streams on this instance (IDENTITY_MAX_STREAMS_PER_KEY): close one first")]
    TooManyStreams { max: usize },
    /// 408: the request was not received and answered in time.
    #[error("the request took too long: send it whole, then retry")]
    RequestTimeout,
    /// 503: WeChat kept answering "system busy", timed out or was unreachable.
    #[error("WeChat is unavailable: retry later")]
    WeChatUnavailable,
    /// 503: the database is unavailable (connection lost, server restarting, no pooled
    /// connection in time, SQLite busy or its disk full): retry. The cause is logged.
    #[error("the database is unavailable: retry shortly")]
    DatabaseUnavailable(#[source] anyhow::Error),
    /// 503: for `/readyz`: the database does not answer, or refuses writes.
    #[error("not ready: {0}")]
    NotReady(&'static str),
    /// 500: logged with its cause, answered without it.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// An unexpected failure: a 500, unless its chain shows the database is unavailable
    /// (then a 503 the client may retry). Every internal error passes here.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let cause = err.into();
        if infra::store::is_database_unavailable(cause.as_ref()) {
            Self::DatabaseUnavailable(cause)
        } else {
            Self::Internal(cause)
        }
    }

    /// 429 `rate_limited`, retry after `wait` (whole seconds, at least one).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        Self::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_)
            | Self::UnknownApp
            | Self::InvalidCode
            | Self::InvalidPhoneCode
            | Self::UserData(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::HighRiskUser | Self::UserBlocked | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound | Self::Missing(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ContentRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType | Self::UnsupportedImage(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::RateLimited { .. } | Self::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::WeChatUnavailable | Self::DatabaseUnavailable(_) | Self::NotReady(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Advice for the client, when the likely fix is known.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::UserData(err) if err.suggests_stale_session_key() => Some(
                "the session_key changed since this data was produced (the user logged in \
                 again): log in with a fresh wx.login() code, then fetch the data again",
            ),
            _ => None,
        }
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownApp => "unknown_app",
            Self::InvalidCode | Self::InvalidPhoneCode => "invalid_code",
            Self::HighRiskUser => "high_risk_user",
            Self::UserBlocked => "user_blocked",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound | Self::Missing(_) => "not_found",
            Self::UserData(err) => {
                use infra::wechat::user_data::UserDataError as E;
                match err {
                    E::SignatureMismatch => "signature_mismatch",
                    E::BadBase64(_) | E::BadIv | E::BadCiphertextLength => {
                        "malformed_encrypted_data"
                    }
                    E::Undecryptable => "decrypt_failed",
                }
            }
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ContentRejected(_) => "content_rejected",
            Self::UnsupportedMediaType | Self::UnsupportedImage(_) => "unsupported_media_type",
            Self::RateLimited { .. } | Self::TooManyStreams { .. } => "rate_limited",
            Self::RequestTimeout => "request_timeout",
            Self::WeChatUnavailable => "wechat_unavailable",
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::NotReady(_) => "not_ready",
            Self::Internal(_) => "internal",
        }
    }
}

/// An RFC 9457 problem: the body of every error answer, as `application/problem+json`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// Always `about:blank`: `code` says what went wrong.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    kind: &'static str,
    /// The HTTP status's reason phrase.
    #[schema(example = "Bad Request")]
    title: &'a str,
    #[schema(example = 400)]
    status: u16,
    /// For people: what was wrong and, where it helps, what to do.
    #[schema(example = "appid: must be \"wx\" followed by 16 hex characters")]
    detail: String,
    /// The stable code clients switch on; each response names the codes it may carry. New
    /// codes may be added, so treat an unknown one by its `status`.
    #[schema(example = "invalid_request")]
    code: &'static str,
    /// What the caller can do about it, when that is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    hint: Option<&'static str>,
}

/// What an error answer said, kept beside its body as a response extension so a layer that
/// answers in another format (the console's HTML pages) shows the same code and detail.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: &'static str,
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed")
            }
            Self::DatabaseUnavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "database unavailable")
            }
            _ => {}
        }
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
            hint: self.hint(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        // For layers that answer in another format (the console's HTML error pages).
        response.extensions_mut().insert(Refusal {
            code: problem.code,
            detail: problem.detail,
        });
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        match &self {
            Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::TooManyStreams { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::WeChatUnavailable | Self::DatabaseUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// Each use-case error has one answer, whichever route it comes from.
impl From<UseCaseError> for ApiError {
    fn from(err: UseCaseError) -> Self {
        match err {
            UseCaseError::InvalidInput(detail) => Self::InvalidRequest(detail),
            UseCaseError::UnknownApp => Self::UnknownApp,
            UseCaseError::NotFound => Self::NotFound,
            UseCaseError::Missing(what) => Self::Missing(what),
            // The user is still there (admins see them as `erased`), but nothing more can be
            // recorded about them: the request conflicts with the user's state.
            UseCaseError::Erased => Self::Conflict(err.to_string()),
            UseCaseError::Blocked => Self::UserBlocked,
            UseCaseError::Conflict(detail) => Self::Conflict(detail),
            UseCaseError::Unauthorized(detail) => Self::Unauthorized(detail),
            UseCaseError::SessionEnded => Self::Unauthorized("the session has ended"),
            UseCaseError::WeChat { appid, call, error } => wechat_answer(&appid, call, error),
            UseCaseError::UserData(err) => Self::UserData(err),
            UseCaseError::ContentRejected(field) => Self::ContentRejected(field),
            UseCaseError::UnsupportedImage => Self::UnsupportedImage(err.to_string()),
            UseCaseError::RateLimited { retry_after_secs } => {
                Self::RateLimited { retry_after_secs }
            }
            UseCaseError::Internal(cause) => Self::internal(cause),
        }
    }
}

/// The answer to a WeChat refusal or failure, for every call we make to WeChat.
fn wechat_answer(appid: &AppId, call: WeChatCall, error: WeChatError) -> ApiError {
    match error {
        WeChatError::InvalidCode { .. } => match call {
            WeChatCall::Login => ApiError::InvalidCode,
            WeChatCall::PhoneNumber => ApiError::InvalidPhoneCode,
        },
        WeChatError::HighRisk => ApiError::HighRiskUser,
        // WeChat's quota (45011) is per minute.
        WeChatError::RateLimited => ApiError::RateLimited {
            retry_after_secs: 60,
        },
        WeChatError::Unavailable(why) => {
            tracing::warn!(%appid, reason = %why, "WeChat unavailable");
            ApiError::WeChatUnavailable
        }
        WeChatError::Misconfigured { errcode } => {
            tracing::error!(%appid, errcode, "WeChat refused our appid/secret: check IDENTITY_APPS");
            ApiError::internal(error)
        }
        other => ApiError::internal(other),
    }
}

/// What routes meet outside a use case (parsing ids, their own reads) answers as a use case's
/// would.
impl From<domain::InvalidValue> for ApiError {
    fn from(err: domain::InvalidValue) -> Self {
        UseCaseError::from(err).into()
    }
}

impl From<infra::store::StoreError> for ApiError {
    fn from(err: infra::store::StoreError) -> Self {
        UseCaseError::from(err).into()
    }
}

impl From<projections::ProjectionError> for ApiError {
    fn from(err: projections::ProjectionError) -> Self {
        UseCaseError::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(err: UseCaseError) -> (StatusCode, &'static str) {
        let api = ApiError::from(err);
        (api.status(), api.code())
    }

    #[test]
    fn each_domain_refusal_has_one_answer() {
        use domain::{SessionError, UserError};
        let conflict = (StatusCode::CONFLICT, "conflict");
        let unauthorized = (StatusCode::UNAUTHORIZED, "unauthorized");
        for (refusal, expected) in [
            (UseCaseError::Erased, conflict),
            (UserError::Erased.into(), conflict),
            (
                UserError::Blocked.into(),
                (StatusCode::FORBIDDEN, "user_blocked"),
            ),
            (UserError::UnionIdMismatch.into(), conflict),
            (
                UserError::NotRegistered.into(),
                (StatusCode::NOT_FOUND, "not_found"),
            ),
            (
                UserError::InvalidReason.into(),
                (StatusCode::BAD_REQUEST, "invalid_request"),
            ),
            (SessionError::NotFound.into(), unauthorized),
            (SessionError::Ended.into(), unauthorized),
            (SessionError::Expired.into(), unauthorized),
        ] {
            let shown = format!("{refusal:?}");
            assert_eq!(answer(refusal), expected, "{shown}");
        }
    }

    #[test]
    fn a_refused_code_is_named_by_the_call_that_sent_it() {
        let appid = AppId::parse("wx0123456789abcdef").expect("an appid");
        let refused = |call| UseCaseError::WeChat {
            appid: appid.clone(),
            call,
            error: WeChatError::InvalidCode { errcode: 40029 },
        };
        assert!(matches!(
            ApiError::from(refused(WeChatCall::Login)),
            ApiError::InvalidCode
        ));
        assert!(matches!(
            ApiError::from(refused(WeChatCall::PhoneNumber)),
            ApiError::InvalidPhoneCode
        ));
        let busy = UseCaseError::WeChat {
            appid,
            call: WeChatCall::Login,
            error: WeChatError::RateLimited,
        };
        assert_eq!(
            answer(busy),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        );
    }

    #[test]
    fn an_internal_failure_keeps_its_chain() {
        let cause = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(cause).context("reading the stream");
        let ApiError::Internal(kept) = ApiError::from(UseCaseError::Internal(err)) else {
            panic!("internal");
        };
        assert_eq!(format!("{kept:#}"), "reading the stream: disk on fire");
    }

    #[test]
    fn an_unavailable_database_is_a_503_to_retry_whatever_wraps_it() {
        let lost = infra::store::StoreError::SharedWrite {
            message: "the writer has stopped".into(),
            unavailable: true,
        };
        let err = UseCaseError::internal(anyhow::Error::new(lost).context("loading the user"));
        let api = ApiError::from(err);
        assert_eq!(
            (api.status(), api.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
        );
        let response = api.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");

        let corrupt = infra::store::StoreError::Corrupt("bad row".into());
        assert_eq!(
            ApiError::from(UseCaseError::from(corrupt)).code(),
            "internal"
        );
    }
}
