//! `POST /v1/token/refresh` and `POST /v1/token/introspect` (RFC 7662 style).

use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::routing::post;
use axum::{Form, Json, Router};
use domain::{AppId, SessionId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::api_key::{Scoped, TokensIntrospect};
use crate::http::extract::{ApiJson, RequestContext};
use crate::http::responses::{KeyErrors, PublicWriteErrors};
use crate::http::state::AppState;
use crate::http::ApiError;
use crate::usecases::sessions;
use crate::usecases::views::TokenResponse;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/token/refresh", post(refresh))
        .route("/v1/token/introspect", post(introspect))
}

#[derive(Deserialize, ToSchema)]
struct RefreshRequest {
    /// The latest refresh token of the session.
    refresh_token: String,
}

/// Rotate the refresh token
///
/// Answers a new access token and a new refresh token; the presented one is spent. Presenting
/// a spent refresh token again revokes the whole session.
#[utoipa::path(
    post,
    path = "/v1/token/refresh",
    tag = "tokens",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 400, description = "`invalid_request`: malformed JSON or a missing field"),
        (status = 401, description = "`unauthorized`: invalid refresh token, the session has \
            ended (logout, revocation, a lifetime, its user blocked or erased), or reuse of a \
            spent refresh token was detected (the session is now revoked)"),
        PublicWriteErrors,
    )
)]
async fn refresh(
    State(state): State<AppState>,
    ctx: RequestContext,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let tokens = sessions::refresh(&state, &body.refresh_token, &ctx.anonymous()).await?;
    Ok(Json(tokens))
}

#[derive(Deserialize, ToSchema)]
struct IntrospectRequest {
    /// An access token. (A refresh token is never active here: only its session's owner, by
    /// spending it, learns whether it still works.)
    token: String,
    /// Accepted for RFC 7662 clients; ignored, as only access tokens are introspected.
    #[serde(default)]
    #[schema(example = "access_token")]
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7662 sends a form; JSON is accepted too.
struct IntrospectBody(IntrospectRequest);

impl FromRequest<AppState> for IntrospectBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            Form::<IntrospectRequest>::from_request(req, state)
                .await
                .map(|Form(body)| Self(body))
                .map_err(|e| ApiError::InvalidRequest(e.body_text()))
        } else {
            ApiJson::<IntrospectRequest>::from_request(req, state)
                .await
                .map(|ApiJson(body)| Self(body))
        }
    }
}

/// RFC 7662-style introspection of access tokens. The other fields are present only when
/// `active` is true.
#[derive(Default, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false, example = "access_token")]
    pub token_type: Option<&'static str>,
    /// The user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false, value_type = Option<uuid::Uuid>)]
    pub sub: Option<UserId>,
    /// The session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false, value_type = Option<uuid::Uuid>)]
    pub sid: Option<SessionId>,
    /// The appid the session belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false, value_type = Option<String>)]
    pub client_id: Option<AppId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub iss: Option<String>,
    /// Issued at, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub iat: Option<i64>,
    /// Expires at, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub exp: Option<i64>,
}

/// `active` is true only for a genuine, unexpired access token of a session still in force,
/// so a logout, revocation, block or session expiry shows here at once, unlike with offline
/// JWT verification. The caller must hold an API key with `tokens:introspect` (RFC 7662
/// §2.1): anonymous callers could otherwise probe stolen tokens.
#[utoipa::path(
    post,
    path = "/v1/token/introspect",
    tag = "tokens",
    summary = "Introspect an access token (RFC 7662 style)",
    description = "Whether an access token is active now: genuine, unexpired, and its session \
        still in force (a logout, revocation, block or session expiry shows at once). Inactive \
        tokens, and every refresh token, answer `{\"active\": false}` with 200. Takes a form \
        (as RFC 7662) or JSON. Requires an API key with the `tokens:introspect` scope.",
    request_body(content(
        (IntrospectRequest = "application/x-www-form-urlencoded"),
        (IntrospectRequest = "application/json"),
    )),
    security(("api_key" = ["tokens:introspect"])),
    responses(
        (status = 200, description = "Whether the token is active, and its details if so",
            body = Introspection),
        (status = 400, description = "`invalid_request`: malformed form or JSON, or a missing `token`"),
        (status = 415, description = "`unsupported_media_type`: neither a form nor `application/json`"),
        KeyErrors<TokensIntrospect>,
    )
)]
async fn introspect(
    State(state): State<AppState>,
    _: Scoped<TokensIntrospect>,
    IntrospectBody(body): IntrospectBody,
) -> Result<Json<Introspection>, ApiError> {
    let found = sessions::introspect(&state, &body.token).await?;
    Ok(Json(found.map_or_else(Introspection::default, |claims| {
        Introspection {
            active: true,
            token_type: Some("access_token"),
            sub: Some(claims.sub),
            sid: Some(claims.sid),
            client_id: Some(claims.appid),
            iss: Some(claims.iss),
            iat: Some(claims.iat),
            exp: Some(claims.exp),
        }
    })))
}
