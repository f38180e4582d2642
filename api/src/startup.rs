//! Builds the service from its configuration: database, WeChat client, keys, router, listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use infra::crypto::{MasterKey, PhoneIndex};
use infra::personal_data::{LookupIndex, PersonalData};
use infra::relay::{RelayConfig, RelayHandle};
use infra::store::Store;
use infra::tokens::{AccessTokens, RefreshTokens};
use infra::wechat::{AppCredentials, WeChatClient, WeChatClientConfig};
use projections::{ReadModels, RunnerHandle};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::rate_limit::LoginRateLimit;
use crate::http::routes;
use crate::state::{AppState, Services, SystemClock};

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
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let master_key = match &config.master_key {
            Some(encoded) => MasterKey::from_base64(encoded.expose_secret()).context("IDENTITY_MASTER_KEY")?,
            None => anyhow::bail!(
                "IDENTITY_MASTER_KEY is required (base64 of 32 random bytes, e.g. `openssl rand -base64 32`); \
                 `identityd dev` makes one for you"
            ),
        };
        if config.apps.0.is_empty() {
            tracing::warn!(
                "no apps configured (IDENTITY_APPS): every login will answer unknown_app"
            );
        }
        let store = infra::store::connect(&config.database_url)
            .await
            .context("opening the database (IDENTITY_DATABASE_URL)")?;
        Self::build_with_store(config, store, &master_key).await
    }

    pub async fn build_with_store(
        config: &Config,
        store: Arc<dyn Store>,
        master_key: &MasterKey,
    ) -> anyhow::Result<Self> {
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
            master_key,
            config.token_issuer.clone(),
            Duration::from_secs(config.access_token_ttl_secs),
        )
        .await
        .context("loading the token signing keys")?;

        let read_models = ReadModels::connect(&config.database_url)
            .await
            .context("opening the read models")?;
        let personal_data = PersonalData::new(master_key);
        let lookup_index = LookupIndex::new(master_key);
        seal_personal_data(&store, &read_models, &personal_data, &lookup_index).await?;
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

        let state = AppState(Arc::new(Services {
            store,
            wechat,
            apps,
            access_tokens,
            refresh_tokens: RefreshTokens::new(master_key),
            session_key_sealer: master_key.sealer("session-key"),
            clock: Arc::new(SystemClock),
            login_rate_limit: LoginRateLimit::per_minute(config.login_rate_per_minute),
            trust_forwarded_for: config.trust_forwarded_for,
            admin_token: config.admin_token.clone(),
            relay_stream,
            cloud_login_secrets: config.cloud_login_secrets.0.clone(),
            read_models,
            phone_index: PhoneIndex::new(master_key),
            lookup_index,
            personal_data,
            shutting_down: tokio::sync::watch::Sender::new(false),
        }));

        let listener = TcpListener::bind(listen_addr(&config.listen))
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self {
            router: routes::router(state.clone()),
            listener,
            state,
            runners,
            relay,
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

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.local_addr(), backend = self.state.store.backend(), "identityd listening");
        let forget = spawn_rate_limit_janitor(self.state.clone());
        let state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            state.shutting_down.send_replace(true);
        };
        let result = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        forget.abort();
        self.runners.shutdown().await;
        if let Some(relay) = self.relay {
            relay.shutdown().await;
        }
        result
    }
}

fn spawn_rate_limit_janitor(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            state.login_rate_limit.forget_idle();
        }
    })
}

/// `:8080` means every interface, as in Go and most servers; anything else is taken as is.
fn listen_addr(listen: &str) -> String {
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
    if report.rewrote_events() {
        projections::rebuild(read_models, Arc::clone(store), None)
            .await
            .context("rebuilding the read models from the sealed log")?;
    }
    store
        .purge_deleted()
        .await
        .context("emptying the database's WAL")?;
    Ok(())
}
