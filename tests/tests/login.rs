//! The login path, end to end, on both backends.

use identity_tests::{assert_problem, both_backends, json_of, Login, World, APP_A, APP_B, APP_C};
use reqwest::Method;
use serde_json::json;

both_backends! {
    World:
    login_then_me,
    a_returning_user_is_the_same_user,
    concurrent_first_logins_make_one_user,
    concurrent_first_logins_on_two_instances_make_one_user,
    two_apps_of_one_open_platform_are_one_user,
    wechat_refusals_map_to_problems,
    wechat_busy_is_retried,
}

async fn login_then_me(world: World) {
    let login = world.login(APP_A, "alice").await;
    assert_eq!(login["token_type"], "Bearer");
    assert!(login["expires_in"].as_u64().is_some_and(|s| s > 0));
    assert!(login["refresh_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("rt1.")));
    let user = &login["user"];
    assert_eq!(user["is_new_user"], true);
    assert!(user["openid"].as_str().is_some_and(|o| !o.is_empty()));
    assert!(
        user["unionid"].is_string(),
        "APP_A is bound to an Open Platform account"
    );

    let me = json_of(world.me(&login.access).await).await;
    assert_eq!(&me, user, "/v1/me answers the login's user object");

    let login_c = world.login(APP_C, "carol").await;
    assert!(login_c["user"]["unionid"].is_null(), "APP_C is not bound");
    assert_eq!(world.events_of_type("UserRegistered").await.len(), 2);
    assert_eq!(world.events_of_type("UserLoggedIn").await.len(), 2);
}

async fn a_returning_user_is_the_same_user(world: World) {
    let first = world.login(APP_A, "bob").await;
    let second = world.login(APP_A, "bob").await;
    assert_eq!(first["user"]["user_id"], second["user"]["user_id"]);
    assert_eq!(second["user"]["is_new_user"], false);
    assert_eq!(world.events_of_type("UserRegistered").await.len(), 1);
    assert_eq!(world.events_of_type("UserLoggedIn").await.len(), 2);
}

/// 24 logins of one openid at once, each with its own code.
async fn race_first_logins(world: &World, bases: &[String]) {
    let mut codes = Vec::new();
    for _ in 0..24 {
        codes.push(world.wx_login(APP_A, "racer").await);
    }
    let logins = codes.iter().enumerate().map(|(i, code)| async move {
        let body = json!({ "appid": APP_A, "code": code });
        let call = world.call_at(&bases[i % bases.len()], Method::POST, "/v1/wechat/login");
        Login::of(json_of(call.json(&body).send().await).await).user_id
    });
    let mut users = futures::future::join_all(logins).await;
    users.dedup();
    assert_eq!(users.len(), 1, "every login found the same user");
    assert_eq!(world.events_of_type("UserRegistered").await.len(), 1);
    assert_eq!(world.events_of_type("UnionIdLinked").await.len(), 1);
    assert_eq!(world.events_of_type("UserLoggedIn").await.len(), 24);
}

async fn concurrent_first_logins_make_one_user(world: World) {
    race_first_logins(&world, std::slice::from_ref(&world.app.base)).await;
}

async fn concurrent_first_logins_on_two_instances_make_one_user(world: World) {
    let second = world.spawn_instance(|_| {}).await;
    race_first_logins(&world, &[world.app.base.clone(), second.base.clone()]).await;
}

async fn two_apps_of_one_open_platform_are_one_user(world: World) {
    let in_a = world.login(APP_A, "dora").await;
    let in_b = world.login(APP_B, "dora").await;
    assert_eq!(in_a["user"]["user_id"], in_b["user"]["user_id"]);
    assert_eq!(in_a["user"]["unionid"], in_b["user"]["unionid"]);
    assert_ne!(in_a["user"]["openid"], in_b["user"]["openid"]);
    assert_eq!(in_b["user"]["is_new_user"], false);
    let linked = world.events_of_type("WeChatAccountLinked").await;
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].payload["appid"], APP_B);
    assert_eq!(world.events_of_type("UserRegistered").await.len(), 1);
}

async fn wechat_refusals_map_to_problems(world: World) {
    let code = world.wx_login(APP_A, "erin").await;
    assert_eq!(world.login_with(APP_A, &code).await.status(), 200);
    assert_problem(world.login_with(APP_A, &code).await, 400, "invalid_code").await;
    let never_issued = world.login_with(APP_A, "never-issued").await;
    assert_problem(never_issued, 400, "invalid_code").await;

    world
        .inject(json!({ "api": "jscode2session", "errcode": 40226 }))
        .await;
    let code = world.wx_login(APP_A, "erin").await;
    assert_problem(world.login_with(APP_A, &code).await, 403, "high_risk_user").await;

    world
        .inject(json!({ "api": "jscode2session", "errcode": 45011 }))
        .await;
    let response = world.login_with(APP_A, &code).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "rate_limited").await;

    world
        .inject(json!({ "api": "jscode2session", "errcode": -1, "times": 0 }))
        .await;
    assert_problem(
        world.login_with(APP_A, &code).await,
        503,
        "wechat_unavailable",
    )
    .await;

    // Refusals are tallied for admins, not appended to the log (issue 11).
    assert!(world.events_of_type("LoginRejected").await.is_empty());
    let admin = world.api_key("admin:read").await;
    let stats = world
        .get_json(&admin, &format!("/v1/admin/stats/daily?appid={APP_A}"))
        .await;
    let today = stats["days"].as_array().expect("days").last().cloned();
    assert_eq!(
        today.map(|day| day["rejected_logins"].clone()),
        Some(json!({ "invalid_code": 2, "high_risk": 1, "rate_limited": 1 })),
        "{stats}"
    );
}

async fn wechat_busy_is_retried(world: World) {
    world
        .inject(json!({ "api": "jscode2session", "errcode": -1, "times": 1 }))
        .await;
    let code = world.wx_login(APP_A, "fay").await;
    assert_eq!(world.login_with(APP_A, &code).await.status(), 200);
}
