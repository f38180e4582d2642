//! Extractors that answer bad input in our own error format.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use domain::{Actor, AppId, Session, SessionId, UserId};
use infra::tokens::AccessClaims;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::api_key::{bearer_token, AdminWrite, Scoped};
use super::client_ip::ClientIp;
use super::ApiError;
use crate::http::state::AppState;
use crate::usecases::streams::{self, LoadedUser};
use crate::usecases::Context;

/// `axum::Json`, with rejections mapped to 400 / 415 problems. The body is read before its
/// content type is judged, so that one over the limit is `http::body_limit`'s 413 whatever
/// its type, declared or not.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        axum::Json::<T>::from_bytes(&bytes)
            .map(|axum::Json(value)| Self(value))
            .map_err(json_rejection)
    }
}

/// Whether the body says it is JSON, as `axum::Json` judges it: `application/json` or
/// `application/…+json`, parameters aside.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
    else {
        return false;
    };
    essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::InvalidRequest("the body is not valid JSON".into())
        }
        // serde's message names the field and the expected type (our value types never echo
        // the rejected value).
        JsonRejection::JsonDataError(err) => ApiError::InvalidRequest(err.body_text()),
        other => ApiError::InvalidRequest(other.body_text()),
    }
}

/// Where a request came from and which request it is, for event metadata.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub correlation_id: Uuid,
}

const MAX_USER_AGENT: usize = 256;

impl RequestContext {
    /// The use cases' context for this request, on behalf of `actor`.
    pub fn acting_as(&self, actor: Actor) -> Context {
        Context {
            actor,
            client_ip: self.client_ip,
            user_agent: self.user_agent.clone(),
            correlation_id: self.correlation_id,
        }
    }

    /// On behalf of no one yet (a login acts as the user it finds).
    pub fn anonymous(&self) -> Context {
        self.acting_as(Actor::System)
    }
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientIp(client_ip)) = ClientIp::from_request_parts(parts, state).await;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT)
                    .collect()
            });
        // The request id set by the request-id layer (the caller's, or a fresh UUIDv7).
        let correlation_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::try_parse(v).ok())
            .unwrap_or_else(Uuid::now_v7);
        Ok(Self {
            client_ip,
            user_agent,
            correlation_id,
        })
    }
}

/// A caller holding a valid access token for a session that is still active.
#[derive(Debug)]
pub struct Authenticated {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub appid: AppId,
    pub claims: AccessClaims,
    pub session: Session,
    /// Events in the session stream, for the next append's expected version.
    pub session_version: usize,
    /// The user as loaded to check the session is in force, with their data key.
    pub user: LoadedUser,
    /// This request, on the user's behalf.
    pub ctx: Context,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let claims = state
            .access_tokens
            .verify(token)
            .map_err(|_| ApiError::Unauthorized("invalid or expired access token"))?;
        let (session, session_version, user) = streams::load_session_of_user_in_force(
            state,
            claims.sid,
            claims.sub,
            state.clock.now(),
            &state.session_lifetime,
        )
        .await?
        .ok_or(ApiError::Unauthorized("the session has ended"))?;
        let Ok(request) = RequestContext::from_request_parts(parts, state).await;
        Ok(Self {
            ctx: request.acting_as(Actor::User(claims.sub)),
            user_id: claims.sub,
            session_id: claims.sid,
            appid: claims.appid.clone(),
            claims,
            session,
            session_version,
            user,
        })
    }
}

/// An administrator's write: a caller holding `admin:write`, and this request on its behalf
/// (actor `admin:{key id}`).
pub struct AdminAction(pub Context);

impl FromRequestParts<AppState> for AdminAction {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Scoped { caller, .. } = Scoped::<AdminWrite>::from_request_parts(parts, state).await?;
        let Ok(request) = RequestContext::from_request_parts(parts, state).await;
        Ok(Self(request.acting_as(Actor::Admin(caller.key_id))))
    }
}
