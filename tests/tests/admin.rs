//! The admin API: read models behind it, scopes, filters, block and unblock, revoked keys.

use std::time::{Duration, Instant};

use identity_tests::{assert_problem, both_backends, json_of, World, ADMIN_TOKEN, APP_A, APP_B};
use reqwest::Method;
use serde_json::json;

both_backends! {
    World:
    login_history_shows_every_login_within_a_second,
    every_admin_route_checks_its_scope,
    bad_filters_are_invalid_requests,
    blocking_refuses_logins_and_ends_sessions,
    lookups_find_users_by_their_accounts,
    history_pages_with_opaque_cursors,
    a_revoked_key_is_refused_from_the_next_request,
}

async fn login_history_shows_every_login_within_a_second(world: World) {
    let key = world.api_key("admin:read").await;
    const N: usize = 12;
    let first = world.login(APP_A, "carol").await;
    let user_id = first["user"]["user_id"]
        .as_str()
        .expect("user id")
        .to_owned();
    for _ in 1..N {
        world.login(APP_A, "carol").await;
    }
    let started = Instant::now();
    let path = format!("/v1/admin/users/{user_id}/logins?limit=100");
    loop {
        let page = world.get_json(&key, &path).await;
        let items = page["items"].as_array().expect("items");
        if items.len() == N {
            // Newest first.
            let positions: Vec<i64> = items
                .iter()
                .map(|l| l["position"].as_i64().expect("position"))
                .collect();
            assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
            assert!(items
                .iter()
                .all(|l| l["appid"] == APP_A && l["user_id"] == user_id.as_str()));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "history shows {} of {N} logins after a second",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let global = world
        .items(&key, &format!("/v1/admin/logins?appid={APP_A}&limit=100"))
        .await;
    assert_eq!(global.len(), N);
    // Each read model has its own runner: the daily stats may trail the history a moment.
    let stats = loop {
        let stats = world
            .get_json(&key, &format!("/v1/admin/stats/daily?appid={APP_A}"))
            .await;
        if stats["days"][0]["logins"] == N as i64 || started.elapsed() > Duration::from_secs(1) {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let today = &stats["days"][0];
    assert_eq!(today["logins"], N as i64, "{stats}");
    assert_eq!(today["new_users"], 1, "{stats}");
    assert_eq!(today["active_users"], 1, "{stats}");
}

async fn every_admin_route_checks_its_scope(world: World) {
    let login = world.login(APP_A, "dave").await;
    let (user_id, access) = (&login.user_id, &login.access);
    let read = world.api_key("admin:read").await;
    let write = world.api_key("admin:write").await;
    let events = world.api_key("events:read").await;

    let reads = [
        "/v1/admin/users".to_owned(),
        format!("/v1/admin/users/{user_id}"),
        format!("/v1/admin/users/{user_id}/logins"),
        format!("/v1/admin/users/{user_id}/sessions"),
        "/v1/admin/logins".to_owned(),
        "/v1/admin/audit".to_owned(),
        "/v1/admin/stats/daily".to_owned(),
    ];
    world.wait_for_projections(Duration::from_secs(5)).await;
    for path in &reads {
        let forbidden = [access.as_str(), &write, &events];
        world
            .assert_refused_to(Method::GET, path, None, &forbidden)
            .await;
        for allowed in [read.as_str(), ADMIN_TOKEN] {
            assert_eq!(world.get_as(allowed, path).await.status(), 200, "{path}");
        }
    }
    let body = json!({ "reason": "permission matrix" });
    let forbidden = [access.as_str(), &read, &events];
    for action in ["block", "unblock", "sessions/revoke"] {
        let path = format!("/v1/admin/users/{user_id}/{action}");
        world
            .assert_refused_to(Method::POST, &path, Some(&body), &forbidden)
            .await;
        let allowed = world.post_as(&write, &path, body.clone()).await;
        assert_eq!(allowed.status(), 200, "{path}");
    }

    // Erasure last: it ends the user.
    let path = format!("/v1/admin/users/{user_id}");
    world
        .assert_refused_to(Method::DELETE, &path, None, &forbidden)
        .await;
    assert_eq!(world.delete_as(&write, &path).await.status(), 204);
}

async fn bad_filters_are_invalid_requests(world: World) {
    let key = world.api_key("admin:read").await;
    let user = uuid::Uuid::now_v7();
    for path in [
        "/v1/admin/logins?from=yesterday".to_owned(),
        "/v1/admin/logins?to=2026-13-01T00:00:00Z".to_owned(),
        "/v1/admin/logins?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z".to_owned(),
        "/v1/admin/logins?limit=100000".to_owned(),
        "/v1/admin/logins?limit=0".to_owned(),
        "/v1/admin/logins?limit=ten".to_owned(),
        "/v1/admin/logins?cursor=garbage".to_owned(),
        "/v1/admin/logins?appid=nope".to_owned(),
        "/v1/admin/logins?colour=blue".to_owned(),
        format!("/v1/admin/users/{user}/logins?cursor=%00%01"),
        "/v1/admin/users/not-a-uuid".to_owned(),
        "/v1/admin/users?status=sleeping".to_owned(),
        "/v1/admin/users?cursor=eyJub3QiOiJvdXJzIn0".to_owned(),
        "/v1/admin/audit?user_id=42".to_owned(),
        "/v1/admin/audit?from=2026-11-25".to_owned(),
        "/v1/admin/audit?cursor=AAAA".to_owned(),
        "/v1/admin/stats/daily?from=2026-02-30".to_owned(),
        "/v1/admin/stats/daily?from=2020-01-01&to=2026-01-01".to_owned(),
    ] {
        let body = assert_problem(world.get_as(&key, &path).await, 400, "invalid_request").await;
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{path}: {body}"
        );
    }
    assert_problem(
        world.get_as(&key, &format!("/v1/admin/users/{user}")).await,
        404,
        "not_found",
    )
    .await;
}

async fn blocking_refuses_logins_and_ends_sessions(world: World) {
    let write = world.api_key("admin:read,admin:write").await;
    let login = world.login(APP_A, "erin").await;
    let user_id = login.user_id.clone();
    let act = |action, reason| world.admin_action(&write, &user_id, action, reason);

    let blocked = json_of(act("block", "fraud report").await).await;
    assert_eq!(blocked["changed"], true);
    let again = json_of(act("block", "again").await).await;
    assert_eq!(again["changed"], false);

    // The open session stops working at once: /v1/me, refresh, introspection. The same
    // answer as any ended session: a stolen refresh token does not reveal the block.
    world.assert_session_over(&login).await;
    // So does a new login, in any app of the person.
    let code = world.wx_login(APP_A, "erin").await;
    assert_problem(world.login_with(APP_A, &code).await, 403, "user_blocked").await;
    let code = world.wx_login(APP_B, "erin").await;
    assert_problem(world.login_with(APP_B, &code).await, 403, "user_blocked").await;

    world.wait_for_projections(Duration::from_secs(5)).await;
    let user = world
        .get_json(&write, &format!("/v1/admin/users/{user_id}"))
        .await;
    assert_eq!(user["status"], "blocked", "{user}");
    let audit = format!("/v1/admin/audit?user_id={user_id}&action=UserBlocked");
    let entries = world.items(&write, &audit).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("admin:")),
        "{entries:?}"
    );
    let rejected = world
        .items(&write, "/v1/admin/audit?action=LoginRejected")
        .await;
    assert_eq!(rejected.len(), 2, "{rejected:?}");

    let unblocked = json_of(act("unblock", "appeal").await).await;
    assert_eq!(unblocked["changed"], true);
    let again = world.login(APP_A, "erin").await;
    assert_eq!(again.user_id, user_id);
    assert_problem(act("block", "").await, 400, "invalid_request").await;
    let nobody = uuid::Uuid::now_v7().to_string();
    let unknown = world.admin_action(&write, &nobody, "block", "x").await;
    assert_problem(unknown, 404, "not_found").await;
}

async fn lookups_find_users_by_their_accounts(world: World) {
    let key = world.api_key("admin:read").await;
    let a = world.login(APP_A, "frank").await;
    let b = world.login(APP_B, "frank").await;
    let user_id = a["user"]["user_id"].as_str().expect("user id").to_owned();
    assert_eq!(b["user"]["user_id"], user_id.as_str());
    let openid_b = b["user"]["openid"].as_str().expect("openid").to_owned();
    let unionid = a["user"]["unionid"].as_str().expect("unionid").to_owned();
    world.wait_for_projections(Duration::from_secs(5)).await;

    let by_openid = format!("/v1/admin/users?appid={APP_B}&openid={openid_b}");
    let found = world.items(&key, &by_openid).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["user_id"], user_id.as_str());
    assert_eq!(found[0]["accounts"].as_array().expect("accounts").len(), 2);
    let by_unionid = world
        .get_json(&key, &format!("/v1/admin/users?unionid={unionid}"))
        .await;
    assert_eq!(by_unionid["items"][0]["user_id"], user_id.as_str());
    assert!(world
        .items(&key, "/v1/admin/users?unionid=nobody")
        .await
        .is_empty());
}

async fn history_pages_with_opaque_cursors(world: World) {
    let key = world.api_key("admin:read").await;
    for user in ["g1", "g2", "g3", "g4", "g5"] {
        world.login(APP_A, user).await;
    }
    world.wait_for_projections(Duration::from_secs(5)).await;
    let path = format!("/v1/admin/logins?appid={APP_A}&limit=2");
    let seen: Vec<i64> = world
        .all_pages(&key, &path)
        .await
        .iter()
        .map(|l| l["position"].as_i64().expect("position"))
        .collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
}

/// `identityd admin revoke-key` takes effect on the next request, on every instance: keys are
/// looked up in the database at each request, not cached.
async fn a_revoked_key_is_refused_from_the_next_request(world: World) {
    let key = world.api_key("admin:read").await;
    let other = world.api_key("admin:read").await;
    world.get_json(&key, "/v1/admin/logins").await;
    world.revoke_api_key(&key).await;
    assert_problem(
        world.get_as(&key, "/v1/admin/logins").await,
        401,
        "unauthorized",
    )
    .await;
    world.get_json(&other, "/v1/admin/logins").await;
}
