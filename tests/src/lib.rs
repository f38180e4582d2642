//! `spawn_app`: the real service on port 0, against a fresh database of either backend, with
//! the WeChat simulator in-process. Tests talk to it over real HTTP.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use api::config::{Apps, Config};
use api::startup::Application;
use domain::AppId;
use infra::crypto::MasterKey;
use infra::wechat::sim::{SimApp, SimConfig, Simulator};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The admin token every test service is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Two apps bound to one Open Platform account, and one standalone app.
pub const APP_A: &str = "wxa000000000000001";
pub const APP_B: &str = "wxb000000000000002";
pub const APP_C: &str = "wxc000000000000003";
const OPEN_PLATFORM: &str = "open-platform-1";

pub use testkit::{both_backends, Backend};

impl testkit::Fixture for World {
    async fn start(backend: Backend) -> Option<Self> {
        World::start(backend).await
    }
}

/// The cloud-function login secret of `APP_A` (the other apps have none).
pub const CLOUD_SECRET_A: &str = "cloud-secret-a-0123456789abcdef";

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

impl api::state::Clock for TestClock {
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
    pub sim_base: String,
    master_key: String,
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
        let database_url = testkit::fresh_url(backend).await?;
        let app = |appid: &str, secret: &str, open: bool| SimApp {
            appid: AppId::parse(appid).expect("test appid"),
            secret: secret.to_owned(),
            open_platform: open.then(|| OPEN_PLATFORM.to_owned()),
        };
        let simulator = Simulator::new(SimConfig {
            apps: vec![
                app(APP_A, "secret-a", true),
                app(APP_B, "secret-b", true),
                app(APP_C, "secret-c", false),
            ],
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind simulator");
        let sim_base = format!(
            "http://{}",
            listener.local_addr().expect("simulator address")
        );
        let router = simulator.router();
        tokio::spawn(async move { axum::serve(listener, router).await });

        let master_key = MasterKey::generate().to_base64().expose_secret().to_owned();
        let mut world = Self {
            backend,
            clock: Arc::default(),
            database_url,
            simulator,
            sim_base,
            master_key,
            app: TestApp {
                base: String::new(),
                _stop: oneshot::channel().0,
            },
            http: reqwest::Client::new(),
        };
        world.app = world.spawn_instance(|_| {}).await;
        Some(world)
    }

    /// The configuration every instance of this world shares.
    pub fn config(&self) -> Config {
        let apps = format!("{APP_A}:secret-a,{APP_B}:secret-b,{APP_C}:secret-c");
        Config {
            database_url: self.database_url.clone(),
            listen: "127.0.0.1:0".into(),
            wechat_api_base: self.sim_base.clone(),
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
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        TestApp { base, _stop: stop }
    }

    /// Plays the phone: `wx.login()` for `user` in `appid`.
    pub async fn wx_login(&self, appid: &str, user: &str) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/sim/wx.login", self.sim_base))
            .json(&json!({ "appid": appid, "user": user }))
            .send()
            .await
            .expect("simulator answers")
            .json()
            .await
            .expect("simulator JSON");
        answer["code"].as_str().expect("a code").to_owned()
    }

    /// `POST /v1/wechat/login` on the first instance.
    pub async fn login_with(&self, appid: &str, code: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/wechat/login", self.app.base))
            .json(&json!({ "appid": appid, "code": code }))
            .send()
            .await
            .expect("service answers")
    }

    /// A full login of `user` in `appid`; panics unless it succeeds.
    pub async fn login(&self, appid: &str, user: &str) -> Value {
        let code = self.wx_login(appid, user).await;
        let response = self.login_with(appid, &code).await;
        assert_eq!(response.status(), 200, "login of {user} in {appid}");
        response.json().await.expect("login JSON")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base)
    }

    /// Injects a WeChat fault into the simulator.
    pub async fn inject(&self, fault: Value) {
        let status = self
            .http
            .post(format!("{}/sim/faults", self.sim_base))
            .json(&fault)
            .send()
            .await
            .expect("simulator answers")
            .status();
        assert!(status.is_success(), "fault injection refused: {status}");
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

    /// `GET path` with a bearer credential.
    pub async fn get_as(&self, credential: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(credential)
            .send()
            .await
            .expect("service answers")
    }

    /// `POST path` with a bearer credential and a JSON body.
    pub async fn post_as(&self, credential: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(credential)
            .json(&body)
            .send()
            .await
            .expect("service answers")
    }

    /// What the simulator's `wx.getUserProfile()` gives `user` of `appid` sharing `profile`
    /// (WeChat's names: `nickName`, `city`, …), sealed under their current `session_key`.
    pub async fn get_user_profile(&self, appid: &str, user: &str, profile: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}/sim/getUserProfile", self.sim_base))
            .json(&json!({ "appid": appid, "user": user, "profile": profile }))
            .send()
            .await
            .expect("simulator answers");
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("JSON")
    }

    /// Waits until every projection has caught up with the log (up to `timeout`).
    pub async fn wait_for_projections(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let ready: Value = self
                .http
                .get(self.url("/readyz"))
                .send()
                .await
                .expect("readyz answers")
                .json()
                .await
                .expect("readyz JSON");
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

    pub async fn store(&self) -> Arc<dyn infra::store::Store> {
        infra::store::connect(&self.database_url)
            .await
            .expect("open store")
    }
}

/// The body of a 200 answer, as JSON.
pub async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "status");
    response.json().await.expect("JSON")
}

/// `status code detail hint`: everything a problem answer says, to compare answers whole.
pub async fn answer_of(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let body: Value = response.json().await.expect("problem JSON");
    format!(
        "{status} {} {} {}",
        body["code"], body["detail"], body["hint"]
    )
}

/// The body of `POST /v1/me/profile/authorize` for what the simulator's `wx.getUserProfile()`
/// returned.
pub fn authorize_body(wx: &Value) -> Value {
    json!({
        "raw_data": wx["rawData"],
        "signature": wx["signature"],
        "encrypted_data": wx["encryptedData"],
        "iv": wx["iv"],
    })
}

/// Asserts an RFC 9457 problem answer with the given status and code; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(body["code"], code, "problem code in {body}");
    assert_eq!(body["status"], status);
    body
}
