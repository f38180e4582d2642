//! What every request handler shares: the use cases' services, and the HTTP layer's own.

use std::collections::BTreeMap;
use std::sync::Arc;

use domain::AppId;
use secrecy::SecretString;

use crate::http::client_ip::TrustedProxies;
use crate::http::rate_limit::{AuthFailureLimit, LoginRateLimit};
use crate::http::stream_slots::StreamSlots;

#[derive(Clone)]
pub struct AppState(pub Arc<HttpShared>);

impl std::ops::Deref for AppState {
    type Target = HttpShared;

    fn deref(&self) -> &HttpShared {
        &self.0
    }
}

impl AsRef<TrustedProxies> for AppState {
    fn as_ref(&self) -> &TrustedProxies {
        &self.0.trusted_proxies
    }
}

impl AsRef<crate::usecases::Services> for AppState {
    fn as_ref(&self) -> &crate::usecases::Services {
        &self.0.core
    }
}

/// The use cases' services (`core`, reachable through `Deref` as `state.store`, `state.clock`,
/// …) and what only the HTTP layer needs.
pub struct HttpShared {
    /// What the use cases work with (reachable as `state.store`, `state.clock`, …).
    pub core: crate::usecases::Services,
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
    /// `IDENTITY_CONSOLE_IDLE_SECS`, `IDENTITY_CONSOLE_MAX_AGE_SECS`.
    pub console_lifetime: crate::console::ConsoleLifetime,
    /// Turns true when the service starts shutting down: responses that never end on their
    /// own (the Server-Sent Events stream) finish, so the graceful shutdown can complete.
    pub shutting_down: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for HttpShared {
    type Target = crate::usecases::Services;

    fn deref(&self) -> &crate::usecases::Services {
        &self.core
    }
}
