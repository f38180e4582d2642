//! Operations: the counters on `/metrics` move with what the service did, with bounded
//! labels; the stats' time zone is one per database.

use api::config::StatsTimeZone;
use api::startup::Application;
use identity_tests::{assert_problem, both_backends, World, APP_A};
use serde_json::json;

both_backends! {
    World:
    metrics_count_logins_refreshes_reuses_and_wechat_errors,
    http_requests_are_counted_by_route_never_by_path,
    an_instance_in_another_stats_zone_refuses_to_start,
}

async fn scrape(world: &World) -> String {
    world.get("/metrics").await.text().await.expect("text")
}

fn assert_line(metrics: &str, line: &str) {
    assert!(
        metrics.lines().any(|l| l == line),
        "{line} missing from\n{metrics}"
    );
}

async fn metrics_count_logins_refreshes_reuses_and_wechat_errors(world: World) {
    let login = world.login(APP_A, "mia").await;
    for _ in 0..2 {
        assert_eq!(world.get_as(&login.access, "/v1/me").await.status(), 200);
    }
    assert_problem(
        world.get_as("not.a.token", "/v1/me").await,
        401,
        "unauthorized",
    )
    .await;
    let rotated = world.refresh(&login.refresh).await;
    assert_eq!(rotated.status(), 200);
    assert_problem(world.refresh(&login.refresh).await, 401, "unauthorized").await;
    world
        .inject(json!({ "api": "jscode2session", "errcode": 40226 }))
        .await;
    let code = world.wx_login(APP_A, "risky").await;
    assert_problem(world.login_with(APP_A, &code).await, 403, "high_risk_user").await;

    let metrics = scrape(&world).await;
    for line in [
        format!(r#"identity_logins_total{{appid="{APP_A}",outcome="success"}} 1"#),
        format!(r#"identity_logins_total{{appid="{APP_A}",outcome="high_risk_user"}} 1"#),
        r#"identity_token_refreshes_total{outcome="refreshed"} 1"#.to_owned(),
        r#"identity_token_refreshes_total{outcome="reuse_detected"} 1"#.to_owned(),
        "identity_refresh_token_reuses_total 1".to_owned(),
        // Signed here at the login: both requests skipped the signature check.
        r#"identity_access_token_cache_lookups_total{outcome="hit"} 2"#.to_owned(),
        r#"identity_access_token_cache_lookups_total{outcome="miss"} 1"#.to_owned(),
        r#"identity_wechat_call_duration_seconds_count{api="code2Session",errcode="0"} 1"#
            .to_owned(),
        r#"identity_wechat_call_duration_seconds_count{api="code2Session",errcode="40226"} 1"#
            .to_owned(),
    ] {
        assert_line(&metrics, &line);
    }
}

async fn http_requests_are_counted_by_route_never_by_path(world: World) {
    let admin = world.api_key("admin:read").await;
    let user = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let missing = world
        .get_as(&admin, &format!("/v1/admin/users/{user}"))
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(world.get("/no-such-page-7f3a").await.status(), 404);
    world
        .post(
            "/v1/wechat/login",
            json!({ "appid": "wx0000000000000bad", "code": "c" }),
        )
        .await;

    let metrics = scrape(&world).await;
    assert_line(
        &metrics,
        r#"identity_http_request_duration_seconds_count{method="GET",route="/v1/admin/users/{id}",status="404"} 1"#,
    );
    assert_line(
        &metrics,
        r#"identity_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"} 1"#,
    );
    assert_line(
        &metrics,
        r#"identity_logins_total{appid="unknown",outcome="unknown_app"} 1"#,
    );
    for raw in [user, "no-such-page", "wx0000000000000bad"] {
        assert!(!metrics.contains(raw), "{raw} became a label");
    }
}

async fn an_instance_in_another_stats_zone_refuses_to_start(world: World) {
    let admin = world.api_key("admin:read").await;
    let stats = world.get_json(&admin, "/v1/admin/stats/daily").await;
    assert_eq!(stats["timezone"], "UTC");

    // The first instance counts days in UTC and is running: a second one in Shanghai would
    // rebuild the stats under it.
    let mut config = world.config();
    config.stats_timezone = StatsTimeZone::parse("Asia/Shanghai").expect("zone");
    let refused = Application::build_with_clock(&config, world.clock.clone()).await;
    let error = format!("{:#}", refused.err().expect("refused"));
    assert!(
        error.contains("IDENTITY_STATS_TIMEZONE") && error.contains("UTC"),
        "{error}"
    );
    // One in the same zone joins.
    let joined = world.spawn_instance(|_| {}).await;
    assert_eq!(world.get_at(&joined.base, "/healthz").await.status(), 200);
}
