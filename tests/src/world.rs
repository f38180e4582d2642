//! The real service on port 0, against a fresh database of either backend, with the WeChat
//! simulator in-process: a [`World`]. Tests talk to it over real HTTP.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use api::config::{Apps, Config, PushTokens, StatsTimeZone};
use api::startup::Application;
use domain::AppId;
use infra::crypto::MasterKey;
use infra::wechat::sim::Simulator;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use testkit::sim::SimServer;
use tokio::sync::oneshot;

use crate::{Backend, ADMIN_TOKEN, APP_A, APP_B, APP_C, CLOUD_SECRET_A, PUSH_TOKEN_A};

const OPEN_PLATFORM: &str = "open-platform-1";

impl testkit::Fixture for World {
    async fn start(backend: Backend) -> Option<Self> {
        World::start(backend).await
    }
}

/// The services' clock: real time plus an offset that tests move forward (session lifetimes).
#[derive(Debug, Default)]
pub struct TestClock {
    offset_secs: AtomicI64,
}

impl TestClock {
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_secs
            .fetch_add(by.num_seconds(), Ordering::SeqCst);
    }
}

impl api::usecases::services::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::seconds(self.offset_secs.load(Ordering::SeqCst))
    }
}

/// A database, a WeChat simulator and one service instance on them (more can be added).
pub struct World {
    pub backend: Backend,
    /// Every instance's clock.
    pub clock: Arc<TestClock>,
    pub database_url: String,
    pub simulator: Arc<Simulator>,
    sim: SimServer,
    master_key: String,
    /// `IDENTITY_STATS_TIMEZONE` of every instance (the zone guard refuses instances that
    /// disagree on one database).
    stats_timezone: StatsTimeZone,
    pub(crate) store: tokio::sync::OnceCell<Arc<dyn infra::store::Store>>,
    pub app: TestApp,
    pub http: reqwest::Client,
}

/// One running service instance.
pub struct TestApp {
    pub base: String,
    _stop: oneshot::Sender<()>,
}

impl World {
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_in_zone(backend, "UTC").await
    }

    /// A world whose instances show and count days in the IANA zone `zone` (on its own fresh
    /// database, like every world).
    pub async fn start_in_zone(backend: Backend, zone: &str) -> Option<Self> {
        let database_url = testkit::fresh_url(backend).await?;
        Some(Self::start_on(database_url, zone).await)
    }

    /// A world on the database at `database_url` (one nobody else uses: a private
    /// `testkit::PgCluster`'s, say), whose instances count days in the IANA zone `zone`.
    pub async fn start_on(database_url: String, zone: &str) -> Self {
        let backend = testkit::backend_of(&database_url);
        let stats_timezone = StatsTimeZone::parse(zone).expect("an IANA zone");
        let sim = SimServer::start(&[
            (APP_A, "secret-a", Some(OPEN_PLATFORM)),
            (APP_B, "secret-b", Some(OPEN_PLATFORM)),
            (APP_C, "secret-c", None),
        ])
        .await;

        let master_key = MasterKey::generate().to_base64().expose_secret().to_owned();
        let mut world = Self {
            backend,
            clock: Arc::default(),
            database_url,
            simulator: sim.sim.clone(),
            sim,
            master_key,
            stats_timezone,
            store: tokio::sync::OnceCell::new(),
            app: TestApp {
                base: String::new(),
                _stop: oneshot::channel().0,
            },
            http: reqwest::Client::new(),
        };
        world.app = world.spawn_instance(|_| {}).await;
        // WeChat's message push for APP_A reaches the first instance, half a second after the
        // image was fetched (WeChat takes longer; sooner could beat the service's record of
        // the check it submitted).
        let push_url = world.url(&format!("/v1/wechat/push/{APP_A}"));
        let appid = AppId::parse(APP_A).expect("appid");
        world
            .simulator
            .set_push(&appid, &push_url, PUSH_TOKEN_A)
            .expect("the simulator knows APP_A");
        world
    }

    /// The simulator's base URL (its `/sim/*` endpoints play the phone's part).
    pub fn sim_url(&self) -> &str {
        &self.sim.base
    }

    /// The configuration every instance of this world shares.
    pub fn config(&self) -> Config {
        let apps = format!("{APP_A}:secret-a,{APP_B}:secret-b,{APP_C}:secret-c");
        Config {
            database_url: self.database_url.clone(),
            listen: "127.0.0.1:0".into(),
            wechat_api_base: self.sim.base.clone(),
            apps: serde_json::from_value::<Apps>(json!(apps)).expect("apps"),
            admin_token: Some(ADMIN_TOKEN.to_owned().into()),
            master_key: Some(self.master_key.clone().into()),
            token_issuer: "identityd-test".into(),
            // Short, so a rotated signing key reaches every instance within the test.
            signing_key_reload_secs: 1,
            // Tests that need the limits turn them on.
            login_rate_per_minute: 0,
            max_connections_per_ip: 0,
            auth_failures_per_minute: 0,
            cloud_login_secrets: serde_json::from_value::<Apps>(json!(format!(
                "{APP_A}:{CLOUD_SECRET_A}"
            )))
            .expect("cloud secrets"),
            push_tokens: serde_json::from_value::<PushTokens>(json!(format!(
                "{APP_A}:{PUSH_TOKEN_A}"
            )))
            .expect("push tokens"),
            stats_timezone: self.stats_timezone,
            ..Config::defaults()
        }
    }

    /// Another service instance on the same database (as a second pod would be).
    pub async fn spawn_instance(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config();
        adjust(&mut config);
        let app = Application::build_with_clock(&config, self.clock.clone())
            .await
            .expect("service starts");
        // Every answer the instance sends is checked against its OpenAPI document.
        let app = app.map_router(crate::conformance::checked);
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        TestApp { base, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base)
    }

    /// Creates an API key with these scopes (comma-separated) as `identityd admin create-key`
    /// would, and returns it.
    pub async fn api_key(&self, scopes: &str) -> String {
        let scopes = infra::api_keys::parse_scopes(scopes).expect("scopes");
        let key = infra::api_keys::generate("test", scopes, chrono::Utc::now());
        self.store()
            .await
            .insert_api_key(&key.stored)
            .await
            .expect("store the key");
        key.token
    }

    /// Waits until every projection has caught up with the log (up to `timeout`).
    pub async fn wait_for_projections(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let ready = crate::json_of(self.get("/readyz").await).await;
            let lagging = ready["projections"]
                .as_object()
                .is_none_or(|all| all.values().any(|p| p["lag"] != 0));
            if !lagging {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "projections still lag: {ready}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// The simulator's `/sim/*` endpoints: the phone's part.
impl World {
    /// Plays the phone: `wx.login()` for `user` in `appid`.
    pub async fn wx_login(&self, appid: &str, user: &str) -> String {
        self.sim.wx_login(appid, Some(user)).await
    }

    /// What the phone-number button gives `user` of `appid`: a code for `POST /v1/me/phone`.
    pub fn phone_code(&self, appid: &str, user: &str) -> String {
        let appid = AppId::parse(appid).expect("a test appid");
        self.simulator
            .phone_code(&appid, user)
            .expect("a phone code")
    }

    /// Binds the phone number of `user` of `appid` to the user of `access` (the button, then
    /// `POST /v1/me/phone`), and returns the code it used.
    pub async fn bind_phone(&self, access: &str, appid: &str, user: &str) -> String {
        let code = self.phone_code(appid, user);
        let bound = self
            .post_as(access, "/v1/me/phone", json!({ "code": code }))
            .await;
        assert_eq!(bound.status(), 204, "{:?}", bound.text().await);
        code
    }

    /// Shares `profile` (WeChat's names) of `user` of `appid` with the user of `access`:
    /// `wx.getUserProfile()`, then `POST /v1/me/profile/authorize`.
    pub async fn share_profile(&self, access: &str, appid: &str, user: &str, profile: Value) {
        let wx = self.get_user_profile(appid, user, profile).await;
        let body = crate::authorize_body(&wx);
        let answer = self.post_as(access, "/v1/me/profile/authorize", body).await;
        assert_eq!(answer.status(), 204, "{:?}", answer.text().await);
    }

    /// Injects a WeChat fault into the simulator.
    pub async fn inject(&self, fault: Value) {
        self.sim.fault(fault).await;
    }

    /// What the simulator's `wx.getUserProfile()` gives `user` of `appid` sharing `profile`
    /// (WeChat's names: `nickName`, `city`, …), sealed under their current `session_key`.
    pub async fn get_user_profile(&self, appid: &str, user: &str, profile: Value) -> Value {
        let body = json!({ "appid": appid, "user": user, "profile": profile });
        self.sim.post_ok("/sim/getUserProfile", body).await
    }
}
