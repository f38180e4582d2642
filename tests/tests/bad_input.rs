//! Bad input answers a problem with a stable code, never a 500. Backend-independent, so SQLite.

use identity_tests::{assert_problem, Backend, World, APP_A};
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
    let mut request = world.http.post(world.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.expect("answer")
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
    assert_problem(
        post_raw(&world, "/v1/wechat/login", Some("text/plain"), body.clone()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert_problem(
        post_raw(&world, "/v1/wechat/login", None, body).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let huge = json!({ "appid": APP_A, "code": "x".repeat(64 * 1024) }).to_string();
    assert_problem(
        post_raw(&world, "/v1/wechat/login", Some("application/json"), huge).await,
        413,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problems() {
    let world = world().await;
    let response = world
        .http
        .get(world.url("/v2/nothing"))
        .send()
        .await
        .expect("answer");
    assert_problem(response, 404, "not_found").await;
    let response = world
        .http
        .get(world.url("/v1/wechat/login"))
        .send()
        .await
        .expect("answer");
    assert_problem(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn login_rate_limit_per_client_ip() {
    let world = world().await;
    let limited = world
        .spawn_instance(|config| config.login_rate_per_minute = 2)
        .await;
    let login = |code: String| {
        let http = world.http.clone();
        let url = format!("{}/v1/wechat/login", limited.base);
        async move {
            http.post(url)
                .json(&json!({ "appid": APP_A, "code": code }))
                .send()
                .await
                .expect("answer")
        }
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
        let response = world
            .http
            .get(world.url(path))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 200, "{path}");
    }
}
