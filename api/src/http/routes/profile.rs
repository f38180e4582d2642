//! What the signed-in user shares and withdraws: `POST /v1/me/profile/authorize` (legacy
//! encrypted profile), `PUT /v1/me/profile` (fill-in), `POST /v1/me/phone`,
//! `DELETE /v1/me/authorizations/{kind}`, and `DELETE /v1/me` (erasure).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post, put};
use axum::Router;
use domain::{Authorization, WeChatCode};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::http::extract::{ApiJson, Authenticated};
use crate::http::responses::{UserJsonWriteErrors, UserWriteErrors};
use crate::http::state::AppState;
use crate::http::values;
use crate::http::ApiError;
use crate::usecases::profile::{self, EncryptedProfile, ProfileUpdate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/profile/authorize", post(authorize_profile))
        .route("/v1/me/profile", put(update_profile))
        .route("/v1/me/phone", post(bind_phone))
        .route("/v1/me/authorizations/{kind}", delete(withdraw))
        .route("/v1/me", delete(erase_me))
}

/// `wx.getUserProfile()`'s answer, forwarded as is (other fields are ignored).
#[derive(Deserialize, ToSchema)]
pub struct AuthorizeProfileRequest {
    /// `rawData`: the profile as JSON text.
    raw_data: String,
    /// `signature`: hex SHA-1 of `rawData` + session_key.
    signature: String,
    /// `encryptedData`: base64 AES-128-CBC ciphertext under the session_key.
    encrypted_data: String,
    /// `iv`: base64 of 16 bytes.
    iv: String,
}

/// Share the WeChat profile (legacy encrypted data)
///
/// Verifies `signature`, decrypts `encrypted_data` with the user's latest `session_key`, checks
/// the watermark's appid, links a unionid the data carries, and records `ProfileAuthorized`.
/// Data fetched before the user's last login no longer decrypts: the answer then carries a
/// `hint` to log in again. Every failure after the signature check is the same
/// `decrypt_failed` answer (no padding oracle); failed attempts are capped per user and per
/// session key (429 past the cap; the key is retired, so a new `wx.login()` is needed).
#[utoipa::path(
    post,
    path = "/v1/me/profile/authorize",
    tag = "me",
    security(("bearer" = [])),
    request_body = AuthorizeProfileRequest,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "`malformed_encrypted_data`: bad base64 or lengths; \
            `signature_mismatch`; `decrypt_failed`: anything after the signature check (padding, \
            JSON, watermark, refused content), one identical answer; each with a `hint` when a \
            stale session_key is the likely cause. `invalid_request`: malformed body, or no \
            WeChat session key (log in again)"),
        (status = 429, description = "`rate_limited`: too many failed attempts for this user or \
            session key today",
            headers(("Retry-After" = u64, description = "Seconds until the count starts again"))),
        UserJsonWriteErrors,
    )
)]
async fn authorize_profile(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<AuthorizeProfileRequest>,
) -> Result<StatusCode, ApiError> {
    let payload = EncryptedProfile {
        raw_data: body.raw_data,
        signature: body.signature,
        encrypted_data: body.encrypted_data,
        iv: body.iv,
    };
    profile::authorize_profile(&state, auth.user_id, &auth.appid, &payload, &auth.ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The avatar/nickname fill-in (`chooseAvatar`, `type="nickname"`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateProfileRequest {
    #[schema(value_type = Option<values::Nickname>)]
    nickname: Option<String>,
    #[schema(value_type = Option<values::AvatarUrl>)]
    avatar_url: Option<String>,
}

/// Fill in nickname and/or avatar
///
/// The post-2022 profile: given fields replace the current ones; records `ProfileUpdated`.
/// A nickname first goes to WeChat's content check (`msg_sec_check`, unless the app is in
/// `IDENTITY_CONTENT_CHECKS_DISABLED`): `risky` is refused (422, nothing stored); `review`, or
/// WeChat failing to answer, stores it flagged for review (`review: ["nickname"]`).
#[utoipa::path(
    put,
    path = "/v1/me/profile",
    tag = "me",
    security(("bearer" = [])),
    request_body = UpdateProfileRequest,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "`invalid_request`: neither field given, or a field breaking \
            its rule (the detail names it)"),
        (status = 422, description = "`content_rejected`: WeChat's content check found the \
            nickname risky; nothing was stored"),
        UserJsonWriteErrors,
    )
)]
async fn update_profile(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<UpdateProfileRequest>,
) -> Result<StatusCode, ApiError> {
    let update = ProfileUpdate::parse(body.nickname, body.avatar_url)?;
    profile::update_profile(&state, auth.user_id, &auth.appid, update, &auth.ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The phone-number button's answer (`bindgetphonenumber` → `e.detail.code`).
#[derive(Deserialize, ToSchema)]
pub struct BindPhoneRequest {
    /// Opaque, single use, valid 5 minutes.
    #[schema(value_type = values::WeChatCode)]
    code: String,
}

/// Bind the phone number
///
/// Exchanges the phone-number button's code with WeChat (`getuserphonenumber`, with the app's
/// access token) and records `PhoneNumberBound`; the number is sealed, and a keyed hash of it,
/// kept in a look-up table (not the log) and deleted on erasure, serves admin look-ups.
#[utoipa::path(
    post,
    path = "/v1/me/phone",
    tag = "me",
    security(("bearer" = [])),
    request_body = BindPhoneRequest,
    responses(
        (status = 204, description = "Bound"),
        (status = 400, description = "`invalid_request`: malformed body; `invalid_code`: WeChat \
            refused the code (invalid, expired or used)"),
        (status = 429, description = "`rate_limited`: WeChat's quota (45011)",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`wechat_unavailable`: WeChat is busy, timed out or unreachable"),
        UserJsonWriteErrors,
    )
)]
async fn bind_phone(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<BindPhoneRequest>,
) -> Result<StatusCode, ApiError> {
    let code = WeChatCode::parse(&body.code)?;
    profile::bind_phone(&state, auth.user_id, &auth.appid, &code, &auth.ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Withdraw an authorization
///
/// `profile` or `phone`: records `AuthorizationRevoked`; the data stops being shown.
#[utoipa::path(
    delete,
    path = "/v1/me/authorizations/{kind}",
    tag = "me",
    security(("bearer" = [])),
    params(("kind" = values::AuthorizationKind, Path, description = "`profile` or `phone`")),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 400, description = "`invalid_request`: kind is neither profile nor phone"),
        (status = 404, description = "`not_found`: nothing to withdraw"),
        UserWriteErrors,
    )
)]
async fn withdraw(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(kind): Path<String>,
) -> Result<StatusCode, ApiError> {
    let authorization = Authorization::parse(&kind)
        .ok_or_else(|| ApiError::InvalidRequest("the authorization is profile or phone".into()))?;
    profile::withdraw(&state, auth.user_id, &auth.appid, authorization, &auth.ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Erase my personal data
///
/// Self-service erasure: records `UserErased`, destroys the user's data key (every sealed
/// field in the log becomes unreadable), purges the read models and ends every session. A
/// later login registers a new user.
#[utoipa::path(
    delete,
    path = "/v1/me",
    tag = "me",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Erased"),
        UserWriteErrors,
    )
)]
async fn erase_me(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<StatusCode, ApiError> {
    profile::erase(&state, auth.user_id, &auth.ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}
