//! Builds the service from its configuration: database, WeChat client, keys, router, listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use infra::crypto::{MasterKey, PhoneIndex};
use infra::keyring::{Keyring, MasterKeys};
use infra::personal_data::{LookupIndex, PersonalData};
use infra::relay::{RelayConfig, RelayHandle};
use infra::store::Store;
use infra::tokens::{AccessTokenPolicy, AccessTokens, RefreshTokens};
use infra::wechat::{AppCredentials, WeChatClient, WeChatClientConfig};
use projections::{ReadModels, RunnerHandle};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::{Config, PublicUrl};
use crate::http::app;
use crate::http::rate_limit::{AuthFailureLimit, LoginRateLimit};
use crate::http::server::{self, EdgeLimits};
use crate::http::state::{AppState, HttpShared};
use crate::http::stream_slots::StreamSlots;
use crate::usecases;
use crate::usecases::rejections::{self, Rejections};
use crate::usecases::services::{Clock, SystemClock};

/// A bound, ready-to-serve service.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// The projection runners of this instance (one instance at a time is active for each
    /// projection; the others stand by).
    runners: RunnerHandle,
    /// The NATS JetStream relay, when `IDENTITY_NATS_URL` is set (one instance at a time
    /// publishes; the others stand by).
    relay: Option<RelayHandle>,
    edge: EdgeLimits,
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// `build` with the service's clock injected: tests move time with it.
    pub async fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let master_keys = master_keys(config)?;
        if config.apps.0.is_empty() {
            tracing::warn!(
                "no apps configured (IDENTITY_APPS): every login will answer unknown_app"
            );
        }
        anyhow::ensure!(
            (1..=30).contains(&config.signing_key_reload_secs),
            "IDENTITY_SIGNING_KEY_RELOAD_SECS must be 1 to 30"
        );
        let store = infra::store::connect_with(&config.database_url, &config.pool_settings())
            .await
            .context("opening the database (IDENTITY_DATABASE_URL)")?;
        // Every subkey derives from one of the keyring's roots, which the master key only wraps.
        let keyring = infra::keyring::open(store.as_ref(), &master_keys)
            .await
            .context("opening the keyring")?;
        Self::build_with_store(config, store, &keyring, clock).await
    }

    pub async fn build_with_store(
        config: &Config,
        store: Arc<dyn Store>,
        keyring: &Keyring,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let session_lifetime = config.session_lifetime()?;
        let console_lifetime = config.console_lifetime()?;
        let wechat = WeChatClient::new(&config.wechat_api_base, WeChatClientConfig::default())
            .context("IDENTITY_WECHAT_API_BASE")?;
        let apps = config
            .apps
            .0
            .iter()
            .map(|(appid, secret)| {
                let creds = AppCredentials {
                    appid: appid.clone(),
                    secret: secret.clone(),
                };
                (appid.clone(), creds)
            })
            .collect();
        let access_tokens = AccessTokens::load_or_create(
            store.as_ref(),
            &keyring.sealing,
            AccessTokenPolicy {
                issuer: config.token_issuer.clone(),
                ttl: Duration::from_secs(config.access_token_ttl_secs),
                audiences: config
                    .apps
                    .0
                    .keys()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
                reload_interval: Duration::from_secs(config.signing_key_reload_secs),
            },
        )
        .await
        .context("loading the token signing keys")?;

        let read_models = ReadModels::connect_with(
            &config.database_url,
            config.stats_timezone.0,
            &config.pool_settings(),
        )
        .await
        .context("opening the read models")?;
        let personal_data = PersonalData::new(&keyring.sealing);
        let lookup_index = LookupIndex::new(&keyring.lookup);
        seal_personal_data(&store, &read_models, &personal_data, &lookup_index).await?;
        if let Some(before) = read_models
            .settle_stats_timezone(store.clone())
            .await
            .context("settling IDENTITY_STATS_TIMEZONE")?
        {
            tracing::info!(from = %before, to = %read_models.stats_timezone().name(),
                "daily_stats rebuilt in the new IDENTITY_STATS_TIMEZONE");
        }
        let runners = projections::spawn_runners(read_models.clone(), store.clone());
        let relay_config = config.nats_url.as_ref().map(|url| RelayConfig {
            stream: config.nats_stream.clone(),
            subject_prefix: config.nats_subject_prefix.clone(),
            ..RelayConfig::new(url.clone())
        });
        let relay_stream = relay_config.as_ref().map(|r| r.stream.clone());
        let relay = relay_config.map(|relay| {
            tracing::info!(stream = %relay.stream, subjects = %format!("{}.>", relay.subject_prefix),
                "publishing the event log to NATS JetStream");
            infra::relay::spawn_relay(store.clone(), relay)
        });

        let content = usecases::content_check::ContentChecks::new(
            &apps,
            config.push_tokens.0.clone(),
            config.content_checks_disabled.0.clone(),
        )?;
        // Bound before the state is made: the public URL defaults to the bound address.
        let listener = TcpListener::bind(listen_addr(&config.listen))
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let public_url = public_url(config, &listener)?;

        let state = AppState(Arc::new(HttpShared {
            core: usecases::Services {
                store,
                wechat,
                apps,
                access_tokens,
                refresh_tokens: RefreshTokens::new(&keyring.sealing),
                session_key_sealer: keyring.sealing.sealer("session-key"),
                clock,
                session_lifetime,
                read_models,
                // Blind indexes: their hashes cannot be recomputed, so their root never changes.
                phone_index: PhoneIndex::new(&keyring.lookup),
                lookup_index,
                personal_data,
                rejections: Rejections::new(config.rejection_retention_days),
                content,
                public_url,
                avatar_decodes: Arc::new(tokio::sync::Semaphore::new(
                    usecases::avatar::MAX_CONCURRENT_DECODES,
                )),
                stats_timezone: config.stats_timezone.0,
                metrics: usecases::ops_metrics::OpsMetrics::new(config.apps.0.keys()),
            },
            login_rate_limit: LoginRateLimit::per_minute(config.login_rate_per_minute),
            trusted_proxies: config.trusted_proxies.clone(),
            auth_failures: AuthFailureLimit::per_minute(config.auth_failures_per_minute),
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            stream_slots: StreamSlots::new(config.max_streams_per_key),
            admin_token: config.admin_token.clone(),
            relay_stream,
            cloud_login_secrets: config.cloud_login_secrets.0.clone(),
            console_lifetime,
            shutting_down: tokio::sync::watch::Sender::new(false),
        }));

        Ok(Self {
            router: app::router(state.clone()),
            listener,
            state,
            runners,
            relay,
            edge: EdgeLimits {
                header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
                max_connections: server::fd_limit::fit_connections(config.max_connections),
                max_connections_per_ip: config.max_connections_per_ip,
                trusted_proxies: config.trusted_proxies.clone(),
                write_timeout: Duration::from_secs(config.write_timeout_secs),
                shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Wraps the router in a layer of the caller's (the black-box tests check every answer
    /// against the OpenAPI document this way).
    #[doc(hidden)]
    pub fn map_router(mut self, wrap: impl FnOnce(Router) -> Router) -> Self {
        self.router = wrap(self.router);
        self
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.local_addr(), backend = self.state.store.backend().name(),
            max_connections = self.edge.max_connections, "identityd listening");
        let forget = spawn_rate_limit_janitor(self.state.clone());
        let reload_keys = spawn_signing_key_reload(self.state.clone());
        let retention = rejections::spawn_retention(self.state.clone());
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            state.shutting_down.send_replace(true);
        };
        server::serve(self.listener, self.router, self.edge.clone(), shutdown).await;
        forget.abort();
        reload_keys.abort();
        retention.abort();
        self.runners.shutdown().await;
        if let Some(relay) = self.relay {
            relay.shutdown().await;
        }
        Ok(())
    }
}

fn spawn_rate_limit_janitor(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            state.login_rate_limit.forget_idle();
            state.auth_failures.forget_idle();
        }
    })
}

/// Reloads the signing keys now and then, so a key added by `identityd keys rotate` (or retired
/// by `keys retire`) reaches this instance without a restart. A failed reload is retried every
/// second until it succeeds, each failure logged at warn; `/readyz` shows the last success.
fn spawn_signing_key_reload(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = state.access_tokens.reload_interval();
        let mut wait = interval;
        loop {
            tokio::time::sleep(wait).await;
            wait = match state.access_tokens.reload(state.store.as_ref()).await {
                Ok(()) => interval,
                Err(e) => {
                    let since = state.access_tokens.last_reload();
                    tracing::warn!(
                        error = %e,
                        last_success = %since.to_rfc3339(),
                        "reloading the token signing keys failed; keeping the loaded ones, \
                         retrying in {}s",
                        SIGNING_KEY_RELOAD_RETRY.as_secs()
                    );
                    SIGNING_KEY_RELOAD_RETRY
                }
            };
        }
    })
}

/// How soon a failed signing-key reload is tried again.
const SIGNING_KEY_RELOAD_RETRY: Duration = Duration::from_secs(1);

/// `IDENTITY_MASTER_KEY` and, during a master-key rotation, `IDENTITY_MASTER_KEY_PREVIOUS`.
pub fn master_keys(config: &Config) -> anyhow::Result<MasterKeys> {
    let current = match &config.master_key {
        Some(encoded) => {
            MasterKey::from_base64(encoded.expose_secret()).context("IDENTITY_MASTER_KEY")?
        }
        None => anyhow::bail!(
            "IDENTITY_MASTER_KEY is required (base64 of 32 random bytes, e.g. `openssl rand -base64 32`); \
             `identityd dev` makes one for you"
        ),
    };
    let previous = config
        .master_key_previous
        .as_ref()
        .map(|encoded| MasterKey::from_base64(encoded.expose_secret()))
        .transpose()
        .context("IDENTITY_MASTER_KEY_PREVIOUS")?;
    Ok(MasterKeys { current, previous })
}

/// `IDENTITY_PUBLIC_URL`, else `http://{the bound address}` (what `identityd dev` uses).
fn public_url(config: &Config, listener: &TcpListener) -> anyhow::Result<PublicUrl> {
    if let Some(url) = &config.public_url {
        return Ok(url.clone());
    }
    let bound = listener.local_addr().context("the bound address")?;
    if bound.ip().is_unspecified() {
        tracing::warn!(%bound, "IDENTITY_PUBLIC_URL is not set and the service listens on every \
            interface: avatar URLs name {bound}, which clients and WeChat cannot reach; set it");
    }
    Ok(PublicUrl::of_listener(bound))
}

/// `:8080` means every interface, as in Go and most servers; anything else is taken as is.
pub(crate) fn listen_addr(listen: &str) -> String {
    match listen.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => listen.to_owned(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// The one-time personal-data migration (`infra::personal_data::migration`), then the read
/// models rebuilt from the sealed log if it rewrote any event. Every start also empties
/// SQLite's WAL once, finishing an erasure that crashed before it did.
pub async fn seal_personal_data(
    store: &Arc<dyn Store>,
    read_models: &ReadModels,
    personal_data: &PersonalData,
    lookup_index: &LookupIndex,
) -> anyhow::Result<()> {
    let report = infra::personal_data::migration::seal_personal_data(
        store.as_ref(),
        personal_data,
        lookup_index,
        chrono::Utc::now(),
    )
    .await
    .context("the one-time personal-data migration")?;
    if !report.already_done {
        tracing::info!(
            sealed = report.events_sealed,
            blanked = report.events_blanked,
            rejections = report.rejections_stripped,
            claims = report.claims_rekeyed,
            "personal data of older events sealed (one-time migration)"
        );
    }
    // Pending from this run, or from one that crashed between its rewrite and this rebuild.
    let pending = infra::personal_data::migration::REBUILD_PENDING;
    if store.one_time_done(pending).await? {
        projections::rebuild(read_models, Arc::clone(store), None)
            .await
            .context("rebuilding the read models from the sealed log")?;
        store.forget_one_time(pending).await?;
    }
    store
        .purge_deleted()
        .await
        .context("emptying the database's WAL")?;
    Ok(())
}
