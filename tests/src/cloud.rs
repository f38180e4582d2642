//! `POST /v1/wechat/cloud-login`: requests signed as a WeChat cloud function signs them.

use std::future::Future;

use reqwest::{Method, Response};
use serde_json::Value;

use crate::World;

/// A signed cloud-login request; tests may spoil any part after signing.
pub struct Signed {
    pub body: String,
    pub timestamp: i64,
    pub nonce: String,
    pub signature: String,
}

impl Signed {
    /// `body` signed with `secret` at `timestamp` (Unix seconds), under a fresh nonce.
    pub fn new(secret: &str, body: &Value, timestamp: i64) -> Self {
        let body = body.to_string();
        let nonce = uuid::Uuid::now_v7().simple().to_string();
        let signature = infra::signed_request::sign(secret, timestamp, &nonce, body.as_bytes());
        Self {
            body,
            timestamp,
            nonce,
            signature,
        }
    }

    /// `body` signed with `secret` now.
    pub fn now(secret: &str, body: &Value) -> Self {
        Self::new(secret, body, chrono::Utc::now().timestamp())
    }
}

impl World {
    /// `POST /v1/wechat/cloud-login` of a signed request to the instance at `base` (the
    /// answer's future holds no borrow of `signed`).
    pub fn cloud_login_at(&self, base: &str, signed: &Signed) -> impl Future<Output = Response> {
        self.call_at(base, Method::POST, "/v1/wechat/cloud-login")
            .header("content-type", "application/json")
            .header("x-identity-timestamp", &signed.timestamp.to_string())
            .header("x-identity-nonce", &signed.nonce)
            .header("x-identity-signature", &signed.signature)
            .with(|r| r.body(signed.body.clone()))
            .send()
    }
}
