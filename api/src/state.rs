//! What every request handler shares.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::AppId;
use infra::crypto::{PhoneIndex, Sealer};
use infra::personal_data::{LookupIndex, PersonalData};
use infra::store::Store;
use infra::tokens::{AccessTokens, RefreshTokens};
use infra::wechat::{AppCredentials, WeChatClient};
use projections::ReadModels;
use secrecy::SecretString;

use crate::http::client_ip::TrustedProxies;
use crate::http::rate_limit::{AuthFailureLimit, LoginRateLimit};
use crate::http::stream_slots::StreamSlots;
use crate::usecases::rejections::Rejections;

/// Time, injected so tests can control it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Clone)]
pub struct AppState(pub Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub store: Arc<dyn Store>,
    pub wechat: WeChatClient,
    pub apps: BTreeMap<AppId, AppCredentials>,
    pub access_tokens: AccessTokens,
    pub refresh_tokens: RefreshTokens,
    /// Seals WeChat `session_key`s at rest.
    pub session_key_sealer: Sealer,
    pub clock: Arc<dyn Clock>,
    /// `IDENTITY_SESSION_MAX_AGE_SECS`, `IDENTITY_SESSION_IDLE_SECS`.
    pub session_lifetime: domain::SessionLifetime,
    pub login_rate_limit: LoginRateLimit,
    /// Whose `X-Forwarded-For` is believed (`http::client_ip`).
    pub trusted_proxies: TrustedProxies,
    /// Failed API-key and cloud-login authentications per client.
    pub auth_failures: AuthFailureLimit,
    /// Every route but the event stream answers within this time.
    pub request_timeout: std::time::Duration,
    /// Open event streams per API key on this instance.
    pub stream_slots: StreamSlots,
    /// `IDENTITY_ADMIN_TOKEN`: a bootstrap key with every scope.
    pub admin_token: Option<SecretString>,
    /// The JetStream stream the relay publishes to, when `IDENTITY_NATS_URL` is set.
    pub relay_stream: Option<String>,
    /// Shared secrets of the cloud-function login, per app.
    pub cloud_login_secrets: BTreeMap<AppId, SecretString>,
    pub read_models: ReadModels,
    pub phone_index: PhoneIndex,
    /// Keyed hashes of openids and unionids: the claims table and admin look-ups.
    pub lookup_index: LookupIndex,
    /// Seals personal data under per-user data keys (crypto-shredding).
    pub personal_data: PersonalData,
    /// Turns true when the service starts shutting down: responses that never end on their
    /// own (the Server-Sent Events stream) finish, so the graceful shutdown can complete.
    pub shutting_down: tokio::sync::watch::Sender<bool>,
    /// Refused logins: retention and this instance's counters.
    pub rejections: Rejections,
}
