//! The app's access token (`cgi-bin/stable_token`), cached per app.
//!
//! `stable_token` hands every caller the same token until it expires, so instances of this
//! service do not invalidate each other. Within one instance a per-app async lock makes the
//! refresh single flight: whoever finds the cache cold or expiring fetches while the others
//! wait, then find the fresh token.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::AppId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::client::{read_json, Answer, AppCredentials, Failure, WeChatClient};
use super::clock::Clock;
use super::error::WeChatError;

/// Refresh this long before expiry, or a tenth of the token's lifetime when that is shorter
/// (so a short-lived token is not fetched again at every call).
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// Debug is redacted: the token is a credential for the whole app.
#[derive(Clone)]
pub(super) struct AccessToken(SecretString);

impl AccessToken {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

struct CachedToken {
    token: AccessToken,
    refresh_at: Instant,
    expires_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

pub(super) struct AccessTokenCache {
    clock: Arc<dyn Clock>,
    /// The std lock is only held to find or add an app's slot; the slot's async lock is held
    /// across the refresh.
    apps: Mutex<HashMap<AppId, Slot>>,
}

impl fmt::Debug for AccessTokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenCache").finish_non_exhaustive()
    }
}

impl AccessTokenCache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            apps: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, appid: &AppId) -> Slot {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(apps.entry(appid.clone()).or_default())
    }
}

#[derive(Serialize)]
struct StableTokenRequest<'a> {
    grant_type: &'static str,
    appid: &'a str,
    secret: &'a str,
    force_refresh: bool,
}

/// stable_token's own fields.
#[derive(Deserialize)]
struct StableToken {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl WeChatClient {
    /// The app's cached token, fetched first if the cache is cold or the token near expiry.
    pub(super) async fn access_token(
        &self,
        app: &AppCredentials,
    ) -> Result<AccessToken, WeChatError> {
        let slot = self.tokens.slot(&app.appid);
        let mut cached = slot.lock().await;
        let now = self.tokens.clock.now();
        if let Some(hit) = cached.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(hit.token.clone());
        }
        match self.fetch_access_token(app, false).await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *cached = Some(fresh);
                Ok(token)
            }
            // Refreshing ahead of time failed: the current token still works for a while.
            Err(err) => match cached.as_ref().filter(|c| now < c.expires_at) {
                Some(current) => {
                    tracing::warn!(error = %err, "access token refresh failed; keeping the current one");
                    Ok(current.token.clone())
                }
                None => Err(err),
            },
        }
    }

    /// WeChat refused `rejected`: drops it and fetches a new one with `force_refresh` (a plain
    /// call could hand back the very token WeChat refused). When a concurrent caller already
    /// replaced it, takes theirs instead of invalidating it in turn.
    pub(super) async fn replace_rejected_token(
        &self,
        app: &AppCredentials,
        rejected: &AccessToken,
    ) -> Result<AccessToken, WeChatError> {
        let slot = self.tokens.slot(&app.appid);
        let mut cached = slot.lock().await;
        let now = self.tokens.clock.now();
        if let Some(newer) = cached
            .as_ref()
            .filter(|c| c.token.expose() != rejected.expose() && now < c.refresh_at)
        {
            return Ok(newer.token.clone());
        }
        *cached = None;
        let fresh = self.fetch_access_token(app, true).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    #[tracing::instrument(
        name = "wechat.stable_token",
        skip_all,
        fields(appid = %app.appid, force_refresh = force_refresh)
    )]
    async fn fetch_access_token(
        &self,
        app: &AppCredentials,
        force_refresh: bool,
    ) -> Result<CachedToken, WeChatError> {
        let (token, lifetime) = self
            .retrying("stable_token", || {
                self.stable_token_once(app, force_refresh)
            })
            .await
            .map_err(Failure::into_error)?;
        let fetched_at = self.tokens.clock.now();
        let margin = REFRESH_AHEAD.min(lifetime / 10);
        tracing::debug!(expires_in = lifetime.as_secs(), "fetched an access token");
        Ok(CachedToken {
            token,
            refresh_at: fetched_at + (lifetime - margin),
            expires_at: fetched_at + lifetime,
        })
    }

    async fn stable_token_once(
        &self,
        app: &AppCredentials,
        force_refresh: bool,
    ) -> Result<(AccessToken, Duration), Failure> {
        let request =
            self.http
                .post(self.endpoints.stable_token.clone())
                .json(&StableTokenRequest {
                    grant_type: "client_credential",
                    appid: app.appid.as_str(),
                    secret: app.secret.expose_secret(),
                    force_refresh,
                });
        let answer: Answer<StableToken> = read_json(request).await?;
        let answer = answer.accepted()?;
        match (answer.access_token, answer.expires_in) {
            (Some(token), Some(expires_in)) if !token.is_empty() && expires_in > 0 => Ok((
                AccessToken(token.into()),
                Duration::from_secs(expires_in.min(7200)),
            )),
            _ => {
                tracing::warn!("stable_token answer lacks an access_token or expires_in");
                Err(Failure::Final(WeChatError::Unavailable(
                    super::metrics::MALFORMED.into(),
                )))
            }
        }
    }
}
