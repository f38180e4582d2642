//! What the WeChat client suites share: their apps, and the simulator serving them.

// Each suite that includes this uses part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use domain::{AppId, OpenId, WeChatCode};
use infra::wechat::sim::Api;
use infra::wechat::{
    AppCredentials, Code2Session, ManualClock, PhoneInfo, WeChatClient, WeChatClientConfig,
    WeChatError,
};
use serde_json::json;
use testkit::sim::SimServer;

/// Two apps bound to one Open Platform account, one alone, and one WeChat does not know.
pub const APP_A: &str = "wx00000000000000a1";
pub const APP_B: &str = "wx00000000000000b2";
pub const APP_LONE: &str = "wx00000000000000c3";
pub const UNKNOWN_APP: &str = "wx00000000000000d4";
pub const PLATFORM: &str = "open-platform-1";

pub fn appid(raw: &str) -> AppId {
    AppId::parse(raw).expect("test appid")
}

pub fn secret_of(raw: &str) -> String {
    format!("secret-of-{raw}")
}

pub fn creds(raw: &str) -> AppCredentials {
    AppCredentials {
        appid: appid(raw),
        secret: secret_of(raw).into(),
    }
}

/// The client's settings: three attempts, a short backoff, this timeout.
pub fn client_config(timeout: Duration) -> WeChatClientConfig {
    WeChatClientConfig {
        timeout,
        max_attempts: 3,
        backoff: Duration::from_millis(5),
    }
}

/// The simulator serving the apps above (not `UNKNOWN_APP`).
pub async fn start_simulator() -> SimServer {
    let secrets = [APP_A, APP_B, APP_LONE].map(secret_of);
    SimServer::start(&[
        (APP_A, &secrets[0], Some(PLATFORM)),
        (APP_B, &secrets[1], Some(PLATFORM)),
        (APP_LONE, &secrets[2], None),
    ])
    .await
}

/// The simulator, and the real client talking to it over HTTP.
pub struct Sim {
    pub server: SimServer,
    pub client: WeChatClient,
    /// The client's token-cache clock.
    pub clock: ManualClock,
}

impl std::ops::Deref for Sim {
    type Target = SimServer;

    fn deref(&self) -> &SimServer {
        &self.server
    }
}

impl Sim {
    /// The simulator, and a client that gives up on an answer after `timeout`.
    pub async fn start(timeout: Duration) -> Self {
        let server = start_simulator().await;
        let clock = ManualClock::new();
        let client = WeChatClient::new(&server.base, client_config(timeout))
            .expect("client")
            .with_clock(Arc::new(clock.clone()));
        Self {
            server,
            client,
            clock,
        }
    }

    /// The phone's wx.login over HTTP.
    pub async fn login(&self, app: &str, user: Option<&str>) -> WeChatCode {
        WeChatCode::parse(&self.wx_login(app, user).await).expect("valid code")
    }

    /// code2Session with the app's right credentials.
    pub async fn exchange(
        &self,
        app: &str,
        code: &WeChatCode,
    ) -> Result<Code2Session, WeChatError> {
        self.client.code_to_session(&creds(app), code).await
    }

    /// wx.login, then code2Session.
    pub async fn sign_in(&self, app: &str, user: Option<&str>) -> Code2Session {
        let code = self.login(app, user).await;
        self.exchange(app, &code).await.expect("session")
    }

    /// The phone-number button.
    pub async fn phone_code(&self, app: &str, user: &str) -> WeChatCode {
        let body = self
            .post_ok("/sim/getPhoneNumber", json!({"appid": app, "user": user}))
            .await;
        WeChatCode::parse(body["code"].as_str().expect("code")).expect("code")
    }

    pub async fn phone_number(
        &self,
        app: &str,
        code: &WeChatCode,
        openid: Option<&OpenId>,
    ) -> Result<PhoneInfo, WeChatError> {
        self.client
            .get_user_phone_number(&creds(app), code, openid)
            .await
    }

    pub fn calls(&self, api: Api) -> u64 {
        self.sim.calls(api)
    }

    /// Moves the simulator's clock (WeChat's) and the client's together.
    pub fn advance_both(&self, by: Duration) {
        self.sim.advance_clock(by).expect("advance");
        self.clock.advance(by);
    }
}
