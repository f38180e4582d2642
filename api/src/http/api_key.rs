//! Admin and analytics callers: an API key (or the bootstrap `IDENTITY_ADMIN_TOKEN`) as a
//! bearer token, with the scope the route needs.

use std::collections::BTreeSet;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use infra::api_keys::{self, Scope};
use infra::store::{Store, StoreError};
use secrecy::ExposeSecret;

use super::client_ip::ClientIp;
use super::ApiError;
use crate::http::state::AppState;

/// The key id the bootstrap token acts as in the audit log.
pub const BOOTSTRAP_KEY_ID: &str = "bootstrap";

/// An authenticated API key.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub key_id: String,
    pub scopes: BTreeSet<Scope>,
}

impl ApiCaller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(match scope {
                Scope::AdminRead => "this API key lacks the admin:read scope",
                Scope::AdminWrite => "this API key lacks the admin:write scope",
                Scope::EventsRead => "this API key lacks the events:read scope",
                Scope::TokensIntrospect => "this API key lacks the tokens:introspect scope",
            }))
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientIp(client)) = ClientIp::from_request_parts(parts, state).await;
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized("missing API key"))?;
        Self::authenticate_limited(token, client, state).await
    }
}

/// An API key is at most this long (ours are 68 characters; the bootstrap token any length a
/// person would type); a longer one is refused unread.
const MAX_TOKEN_CHARS: usize = 512;

impl ApiCaller {
    /// [`Self::authenticate`] behind the per-client failure limiter, the one way the API and the
    /// console's sign-in check a key. Charged before the key is looked at, so wrong keys sent
    /// all at once get no more refusals than the budget; a right key always passes
    /// (`rate_limit::auth_failures`). A failure is any credential refused (unknown, revoked,
    /// malformed, or a user's access token); a store failure is not the caller's.
    pub(crate) async fn authenticate_limited(
        token: &str,
        client: Option<std::net::IpAddr>,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let attempt = state.auth_failures.begin(client);
        let caller = if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
            Err(ApiError::Unauthorized("unknown or revoked API key"))
        } else {
            Self::authenticate(token, state).await
        };
        if matches!(
            caller,
            Err(ApiError::Unauthorized(_) | ApiError::Forbidden(_))
        ) {
            state
                .auth_failures
                .failed(attempt)
                .map_err(ApiError::rate_limited)?;
        } else {
            state.auth_failures.succeeded(attempt);
        }
        caller
    }
}

impl ApiCaller {
    pub(crate) async fn authenticate(token: &str, state: &AppState) -> Result<Self, ApiError> {
        if let Some((key_id, secret)) = api_keys::split_token(token) {
            return match state.store.api_key(key_id).await? {
                Some(key) if key.revoked_at.is_none() && key.verify(secret) => Ok(Self {
                    key_id: key.key_id,
                    scopes: key.scopes,
                }),
                _ => Err(ApiError::Unauthorized("unknown or revoked API key")),
            };
        }
        if let Some(bootstrap) = &state.admin_token {
            if api_keys::same_secret(token, bootstrap.expose_secret()) {
                return Ok(Self {
                    key_id: BOOTSTRAP_KEY_ID.to_owned(),
                    scopes: Scope::ALL.into_iter().collect(),
                });
            }
        }
        // A user's access token is a real credential, just not one for this API.
        if state.access_tokens.verify(token).is_ok() {
            return Err(ApiError::Forbidden(
                "a user access token cannot call this API: use an API key",
            ));
        }
        Err(ApiError::Unauthorized("unknown or revoked API key"))
    }

    /// Whether this caller may still hold `scope`: a key revoked (or gone) since it was checked
    /// no longer does. The bootstrap key lives as long as the process's configuration.
    pub async fn still_holds(&self, store: &dyn Store, scope: Scope) -> Result<bool, StoreError> {
        if self.key_id == BOOTSTRAP_KEY_ID {
            return Ok(true);
        }
        Ok(store
            .api_key(&self.key_id)
            .await?
            .is_some_and(|key| key.revoked_at.is_none() && key.scopes.contains(&scope)))
    }
}

/// The scope a route requires, as a type, so the router shows it at a glance.
pub trait RequiredScope: Send + Sync {
    const SCOPE: Scope;
}

pub struct AdminRead;
pub struct AdminWrite;
pub struct EventsRead;
pub struct TokensIntrospect;

impl RequiredScope for AdminRead {
    const SCOPE: Scope = Scope::AdminRead;
}
impl RequiredScope for AdminWrite {
    const SCOPE: Scope = Scope::AdminWrite;
}
impl RequiredScope for EventsRead {
    const SCOPE: Scope = Scope::EventsRead;
}
impl RequiredScope for TokensIntrospect {
    const SCOPE: Scope = Scope::TokensIntrospect;
}

/// An API caller holding scope `S`.
pub struct Scoped<S: RequiredScope> {
    pub caller: ApiCaller,
    _scope: PhantomData<S>,
}

impl<S: RequiredScope> FromRequestParts<AppState> for Scoped<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = ApiCaller::from_request_parts(parts, state).await?;
        caller.require(S::SCOPE)?;
        Ok(Self {
            caller,
            _scope: PhantomData,
        })
    }
}

/// The token of an `Authorization: Bearer …` header (API keys and access tokens alike).
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}
