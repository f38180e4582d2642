//! Bad input answers a problem with a stable code, never a 500. Backend-independent, so SQLite.

use identity_tests::{assert_problem, Backend, World, APP_A};
use reqwest::Method;
use serde_json::json;

async fn world() -> World {
    World::start(Backend::Sqlite)
        .await
        .expect("SQLite is always available")
}

async fn post_raw(
    world: &World,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut call = world.call(Method::POST, path).with(|r| r.body(body));
    if let Some(content_type) = content_type {
        call = call.header("content-type", content_type);
    }
    call.send().await
}

#[tokio::test]
async fn malformed_login_bodies_are_400() {
    let world = world().await;
    let json = Some("application/json");
    let cases: Vec<(&str, String)> = vec![
        ("not JSON", "{\"appid\":".into()),
        (
            "wrong type",
            json!({ "appid": APP_A, "code": 42 }).to_string(),
        ),
        ("missing field", json!({ "appid": APP_A }).to_string()),
        (
            "empty code",
            json!({ "appid": APP_A, "code": "" }).to_string(),
        ),
        (
            "oversized code",
            json!({ "appid": APP_A, "code": "c".repeat(257) }).to_string(),
        ),
        (
            "non-ASCII code",
            json!({ "appid": APP_A, "code": "代码" }).to_string(),
        ),
        (
            "malformed appid",
            json!({ "appid": "wx123", "code": "abc" }).to_string(),
        ),
        ("array body", "[]".into()),
    ];
    for (case, body) in cases {
        let problem = assert_problem(
            post_raw(&world, "/v1/wechat/login", json, body).await,
            400,
            "invalid_request",
        )
        .await;
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{case}: a detail"
        );
    }
}

#[tokio::test]
async fn an_unknown_app_is_named_as_such() {
    let world = world().await;
    let body = json!({ "appid": "wx00000000000000ff", "code": "abc" }).to_string();
    assert_problem(
        post_raw(&world, "/v1/wechat/login", Some("application/json"), body).await,
        400,
        "unknown_app",
    )
    .await;
}

#[tokio::test]
async fn content_type_and_size_are_enforced() {
    let world = world().await;
    let body = json!({ "appid": APP_A, "code": "abc" }).to_string();
    let huge = json!({ "appid": APP_A, "code": "x".repeat(64 * 1024) }).to_string();
    for (content_type, body, status, code) in [
        (
            Some("text/plain"),
            body.clone(),
            415,
            "unsupported_media_type",
        ),
        (None, body, 415, "unsupported_media_type"),
        (Some("application/json"), huge, 413, "payload_too_large"),
    ] {
        let answer = post_raw(&world, "/v1/wechat/login", content_type, body).await;
        assert_problem(answer, status, code).await;
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problems() {
    let world = world().await;
    assert_problem(world.get("/v2/nothing").await, 404, "not_found").await;
    let wrong_method = world.get("/v1/wechat/login").await;
    assert_problem(wrong_method, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn login_rate_limit_per_client_ip() {
    let world = world().await;
    let limited = world
        .spawn_instance(|config| config.login_rate_per_minute = 2)
        .await;
    let login = |code: String| {
        world
            .call_at(&limited.base, Method::POST, "/v1/wechat/login")
            .json(&json!({ "appid": APP_A, "code": code }))
            .send()
    };
    for _ in 0..2 {
        let code = world.wx_login(APP_A, "speedy").await;
        assert_eq!(login(code).await.status(), 200);
    }
    let code = world.wx_login(APP_A, "speedy").await;
    let response = login(code).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after));
    assert_problem(response, 429, "rate_limited").await;
}

#[tokio::test]
async fn health_and_readiness() {
    let world = world().await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(world.get(path).await.status(), 200, "{path}");
    }
}
