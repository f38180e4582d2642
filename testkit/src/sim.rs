//! The WeChat simulator on a free port, as every test that talks to it over HTTP starts it.

use std::sync::Arc;

use domain::AppId;
use infra::wechat::sim::{SimApp, SimConfig, Simulator};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// A running simulator: its state, its base URL and a client for its endpoints.
pub struct SimServer {
    pub sim: Arc<Simulator>,
    pub base: String,
    pub http: reqwest::Client,
}

impl SimServer {
    /// Serves a simulator of these apps: (appid, secret, Open Platform account if bound).
    pub async fn start(apps: &[(&str, &str, Option<&str>)]) -> Self {
        let sim = Simulator::new(SimConfig {
            apps: apps
                .iter()
                .map(|(appid, secret, platform)| SimApp {
                    appid: AppId::parse(appid).expect("a test appid"),
                    secret: (*secret).to_owned(),
                    open_platform: platform.map(str::to_owned),
                })
                .collect(),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the simulator");
        let base = format!(
            "http://{}",
            listener.local_addr().expect("simulator address")
        );
        let router = sim.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            sim,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("simulator answers")
    }

    /// `POST path` with a JSON body, answered 200: its JSON.
    pub async fn post_ok(&self, path: &str, body: Value) -> Value {
        let response = self.post(path, body).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.expect("simulator JSON")
    }

    /// `GET path`, answered 200: its JSON.
    pub async fn get_ok(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("simulator answers");
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.expect("simulator JSON")
    }

    /// Plays the phone: `wx.login()` for `user` (someone new if `None`) in `appid`: a code.
    pub async fn wx_login(&self, appid: &str, user: Option<&str>) -> String {
        let body = self
            .post_ok("/sim/wx.login", json!({ "appid": appid, "user": user }))
            .await;
        body["code"].as_str().expect("a code").to_owned()
    }

    /// Injects a WeChat fault (`/sim/faults`).
    pub async fn fault(&self, fault: Value) {
        let status = self.post("/sim/faults", fault).await.status();
        assert_eq!(status, 204, "fault injection refused");
    }

    /// Clears every injected fault.
    pub async fn clear_faults(&self) {
        let response = self
            .http
            .delete(self.url("/sim/faults"))
            .send()
            .await
            .expect("simulator answers");
        assert_eq!(response.status(), 204);
    }
}
