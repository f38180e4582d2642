//! Console sessions: an API key (or the bootstrap token) exchanged once, at sign-in, for a
//! random session token in an HttpOnly, SameSite=Strict cookie.
//!
//! - The store keeps SHA-256 of the token (`console_sessions`), never the token: the token is
//!   256 random bits, so a fast hash is enough, and a copy of the table signs no one in.
//! - The CSRF token is derived from the session token, `HMAC-SHA256(token, "identity-console csrf")`, rather
//!   than stored: nothing more to keep or leak, it changes with each session, and only a holder
//!   of the cookie can compute it (the cookie is HttpOnly and never leaves our origin).
//! - Every request re-checks the key: a revoked (or deleted) key ends the session, and so does
//!   a bootstrap session once `IDENTITY_ADMIN_TOKEN` is no longer the token signed in with
//!   (the row holds an HMAC of that token under the session token, not the token).
//! - Idle and absolute expiry (`IDENTITY_CONSOLE_IDLE_SECS`, `IDENTITY_CONSOLE_MAX_AGE_SECS`);
//!   `last_seen_at` is written at most once a minute per session.

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use infra::api_keys::{self, Scope};
use infra::store::{ConsoleSessionBounds, StoredConsoleSession};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::cookies;
use super::i18n::query_for_lang_links;
use crate::http::api_key::{ApiCaller, BOOTSTRAP_KEY_ID};
use crate::http::state::AppState;
use crate::http::ApiError;

/// How long a console session lasts: since its last request, and since its sign-in.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleLifetime {
    pub idle: Duration,
    pub max_age: Duration,
}

/// A key keeps at most this many console sessions; signing in again drops the oldest.
pub const MAX_SESSIONS_PER_KEY: u32 = 16;

/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY: Duration = Duration::minutes(1);

/// Session tokens are 32 random bytes, base64url: 43 characters. A cookie longer than this is
/// not one of ours and is not even hashed.
const MAX_TOKEN_CHARS: usize = 64;

/// A signed-in console user: the key they signed in with and what it may do.
#[derive(Clone)]
pub struct ConsoleSession {
    pub key_id: String,
    pub scopes: BTreeSet<Scope>,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    token_hash: Vec<u8>,
    /// Whether the request came over https (which cookie name it uses).
    pub https: bool,
    /// `IDENTITY_STATS_TIMEZONE`: the zone pages show times in.
    pub zone: chrono_tz::Tz,
    /// This request's query without `lang`, for the language links (`i18n`).
    pub lang_link_query: String,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("key_id", &self.key_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ConsoleSession {
    /// Whether the session's key holds `admin:write` (the console then shows actions).
    pub fn can_write(&self) -> bool {
        self.scopes.contains(&Scope::AdminWrite)
    }

    /// 403 unless the session's key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        ApiCaller {
            key_id: self.key_id.clone(),
            scopes: self.scopes.clone(),
        }
        .require(scope)
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        api_keys::same_secret(presented, &self.csrf)
    }

    /// Signs out: the row goes, whatever the cookie does next; the cookie is cleared and the
    /// browser sent to sign in.
    pub async fn sign_out(&self, state: &AppState) -> Result<Response, ApiError> {
        state.store.delete_console_session(&self.token_hash).await?;
        let cookie = cookies::set(cookies::session_cookie_name(self.https), None, self.https);
        Ok((
            [(header::SET_COOKIE, cookie)],
            Redirect::to("/console/sign-in"),
        )
            .into_response())
    }
}

/// Why there is no session: sign in (a redirect), or a failure to report.
pub enum NoSession {
    SignIn,
    Failed(ApiError),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/console/sign-in").into_response(),
            Self::Failed(err) => err.into_response(),
        }
    }
}

impl From<ApiError> for NoSession {
    fn from(err: ApiError) -> Self {
        Self::Failed(err)
    }
}

impl FromRequestParts<AppState> for ConsoleSession {
    type Rejection = NoSession;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(session) = parts.extensions.get::<ConsoleSession>() {
            return Ok(session.clone());
        }
        let https = cookies::over_https(parts, state.public_url.as_str(), &state.trusted_proxies);
        let token = cookies::get(&parts.headers, cookies::session_cookie_name(https))
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_CHARS)
            .ok_or(NoSession::SignIn)?;
        let token_hash = hash(token);
        let row = state
            .store
            .console_session(&token_hash)
            .await
            .map_err(ApiError::from)?
            .ok_or(NoSession::SignIn)?;
        let now = state.clock.now();
        if !in_force(&row, now, &state.console_lifetime) || !key_holds(&row, token, state).await? {
            state
                .store
                .delete_console_session(&token_hash)
                .await
                .map_err(ApiError::from)?;
            return Err(NoSession::SignIn);
        }
        if now - row.last_seen_at >= TOUCH_EVERY {
            state
                .store
                .touch_console_session(&token_hash, now)
                .await
                .map_err(ApiError::from)?;
        }
        let session = Self {
            key_id: row.key_id,
            scopes: row.scopes,
            csrf: csrf_of(token),
            token_hash,
            https,
            zone: state.stats_timezone,
            lang_link_query: query_for_lang_links(parts.uri.query()),
        };
        parts.extensions.insert(session.clone());
        Ok(session)
    }
}

fn in_force(row: &StoredConsoleSession, now: DateTime<Utc>, lifetime: &ConsoleLifetime) -> bool {
    now - row.last_seen_at < lifetime.idle && now - row.created_at < lifetime.max_age
}

/// Whether the key the session signed in with still stands: a bootstrap session while
/// `IDENTITY_ADMIN_TOKEN` is still the token it signed in with, any other while its key is
/// unrevoked (`ApiCaller::still_holds`; every session's key holds `admin:read`).
async fn key_holds(
    row: &StoredConsoleSession,
    token: &str,
    state: &AppState,
) -> Result<bool, ApiError> {
    if row.key_id == BOOTSTRAP_KEY_ID {
        return Ok(match (&state.admin_token, &row.bootstrap_check) {
            (Some(bootstrap), Some(check)) => mac(token, bootstrap.expose_secret())
                .verify_slice(check)
                .is_ok(),
            _ => false,
        });
    }
    let caller = ApiCaller {
        key_id: row.key_id.clone(),
        scopes: row.scopes.clone(),
    };
    Ok(caller
        .still_holds(state.store.as_ref(), Scope::AdminRead)
        .await?)
}

/// A new session for `caller`: the token for the cookie (shown to no one else).
pub async fn open(state: &AppState, caller: &ApiCaller) -> Result<SecretString, ApiError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let bootstrap_check = (caller.key_id == BOOTSTRAP_KEY_ID)
        .then(|| state.admin_token.as_ref())
        .flatten()
        .map(|bootstrap| {
            mac(&token, bootstrap.expose_secret())
                .finalize()
                .into_bytes()
                .to_vec()
        });
    let now = state.clock.now();
    let lifetime = &state.console_lifetime;
    let row = StoredConsoleSession {
        token_hash: hash(&token),
        key_id: caller.key_id.clone(),
        scopes: caller.scopes.clone(),
        bootstrap_check,
        created_at: now,
        last_seen_at: now,
    };
    let bounds = ConsoleSessionBounds {
        idle_before: now - lifetime.idle,
        created_before: now - lifetime.max_age,
        max_per_key: MAX_SESSIONS_PER_KEY,
    };
    state.store.insert_console_session(&row, bounds).await?;
    Ok(SecretString::from(token))
}

/// Ends the session whose cookie `headers` carry, if any: a sign-in replaces it rather than
/// leaving it valid beside the new one.
pub async fn end_presented(
    state: &AppState,
    headers: &HeaderMap,
    https: bool,
) -> Result<(), ApiError> {
    if let Some(token) = cookies::get(headers, cookies::session_cookie_name(https))
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_CHARS)
    {
        state.store.delete_console_session(&hash(token)).await?;
    }
    Ok(())
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn mac(key: &str, message: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message.as_bytes());
    mac
}

fn csrf_of(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(token, "identity-console csrf").finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_is_bound_to_the_session() {
        let a = csrf_of("token-a");
        assert_eq!(a, csrf_of("token-a"));
        assert_ne!(a, csrf_of("token-b"));
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn expiry_idle_and_absolute() {
        let lifetime = ConsoleLifetime {
            idle: Duration::minutes(30),
            max_age: Duration::hours(12),
        };
        let start = Utc::now();
        let row = |created: DateTime<Utc>, seen: DateTime<Utc>| StoredConsoleSession {
            token_hash: vec![],
            key_id: "k".into(),
            scopes: BTreeSet::new(),
            bootstrap_check: None,
            created_at: created,
            last_seen_at: seen,
        };
        assert!(in_force(
            &row(start, start),
            start + Duration::minutes(29),
            &lifetime
        ));
        assert!(!in_force(
            &row(start, start),
            start + Duration::minutes(30),
            &lifetime
        ));
        let busy = start + Duration::hours(12);
        assert!(!in_force(&row(start, busy), busy, &lifetime));
    }
}
