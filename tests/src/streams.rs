//! `GET /v1/events/stream` from the outside: opening one, and waiting for it to end.

use std::time::{Duration, Instant};

use reqwest::{Method, Response};

use crate::World;

impl World {
    /// `GET /v1/events/stream` on the instance at `base` as `key`, its first chunk (the
    /// `retry:` hello) read.
    pub async fn open_event_stream(&self, base: &str, key: &str) -> Response {
        let mut response = self.event_stream_at(base, key).await;
        assert_eq!(response.status(), 200);
        let hello = response.chunk().await.expect("readable").expect("a hello");
        assert!(hello.starts_with(b"retry:"), "{hello:?}");
        response
    }

    /// `GET /v1/events/stream` on the instance at `base` as `key`, whatever it answers.
    pub async fn event_stream_at(&self, base: &str, key: &str) -> Response {
        self.call_at(base, Method::GET, "/v1/events/stream")
            .bearer(key)
            .send()
            .await
    }

    /// Revokes an API key as `identityd admin revoke-key` would.
    pub async fn revoke_api_key(&self, key: &str) {
        let (key_id, _) = infra::api_keys::split_token(key).expect("one of our keys");
        self.store()
            .await
            .revoke_api_key(key_id, chrono::Utc::now())
            .await
            .expect("revoke the key")
            .expect("the key exists");
    }
}

/// Reads until the response ends (failing after `within`); how long that took.
pub async fn until_ended(response: &mut Response, within: Duration) -> Duration {
    let started = Instant::now();
    let ended = tokio::time::timeout(within, async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream is still open after {within:?}");
    started.elapsed()
}

/// Asserts that something more arrives on an open stream within 10 s.
pub async fn assert_more_arrives(response: &mut Response, why: &str) {
    let next = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("an event within 10 s")
        .expect("readable");
    assert!(next.is_some(), "{why}");
}
