//! Sessions end: lifetimes, block and unblock, erasure, and session management by the user and
//! by admins.

use std::time::Duration;

use identity_tests::{
    assert_problem, both_backends, json_of, Login, World, ADMIN_TOKEN, APP_A, APP_B,
};
use serde_json::{json, Value};

both_backends! {
    World:
    block_then_unblock_revives_no_session,
    a_session_no_revocation_reached_stays_over_after_unblock,
    refresh_fails_after_the_idle_lifetime,
    refresh_fails_after_the_absolute_lifetime,
    users_list_and_end_their_own_sessions,
    my_sessions_right_after_login_hold_this_one,
    admins_list_and_revoke_a_users_sessions,
    erasure_revokes_every_session_and_an_erased_user_cannot_be_blocked,
}

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x1800442a)";

/// Logs `user` in from an iPhone.
async fn login(world: &World, appid: &str, user: &str) -> Login {
    world.login_from(appid, user, IPHONE).await
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().expect(key).to_owned()
}

/// The `SessionRevoked` payload of each of `sessions`, in their order, as analytics sees it
/// (readers on PostgreSQL see a commit once older transactions end).
async fn revocations(world: &World, sessions: &[&str]) -> Vec<Value> {
    let key = world.api_key("events:read").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = world.get_json(&key, "/v1/events?after=0&limit=1000").await;
        let revoked = |session: &&str| {
            page["events"].as_array().expect("events").iter().find(|e| {
                e["event_type"] == "SessionRevoked"
                    && e["stream_id"] == format!("session-{session}").as_str()
            })
        };
        if let Some(found) = sessions.iter().map(revoked).collect::<Option<Vec<_>>>() {
            return found.into_iter().map(|e| e["payload"].clone()).collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no SessionRevoked for every one of {sessions:?}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that each of `sessions` was revoked for `reason`.
async fn assert_revoked(world: &World, sessions: &[&Login], reason: &str) {
    let ids: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    for payload in revocations(world, &ids).await {
        assert_eq!(payload["reason"], reason, "{payload}");
    }
}

async fn block_then_unblock_revives_no_session(world: World) {
    let admin = world.api_key("admin:write").await;
    let phone = login(&world, APP_A, "bob").await;
    let tablet = login(&world, APP_A, "bob").await;
    let act = |action, reason| world.admin_action(&admin, &phone.user_id, action, reason);
    let blocked = json_of(act("block", "fraud").await).await;
    assert_eq!(blocked["changed"], true);

    // Every open session got its own SessionRevoked, with the reason.
    assert_revoked(&world, &[&phone, &tablet], "user_blocked").await;

    let unblocked = json_of(act("unblock", "appeal").await).await;
    assert_eq!(unblocked["changed"], true);
    for old in [&phone, &tablet] {
        world.assert_session_over(old).await;
    }
    // A new login works, and a second block/unblock round leaves it dead too.
    let fresh = login(&world, APP_A, "bob").await;
    assert_eq!(world.me(&fresh.access).await.status(), 200);
    assert_eq!(world.refresh(&fresh.refresh).await.status(), 200);
    json_of(act("block", "again").await).await;
    json_of(act("unblock", "sorry").await).await;
    assert_problem(world.me(&fresh.access).await, 401, "unauthorized").await;
}

/// As if the block's list of sessions had missed them (a read model a few milliseconds
/// behind): block and unblock go straight into the log, without any `SessionRevoked`.
async fn a_session_no_revocation_reached_stays_over_after_unblock(world: World) {
    let old = login(&world, APP_A, "nia").await;
    let user = domain::UserId::parse(&old.user_id).expect("user id");
    let store = world.store().await;
    for event in [
        domain::UserEvent::UserBlocked {
            reason: "fraud".into(),
        },
        domain::UserEvent::UserUnblocked {
            reason: "appeal".into(),
        },
    ] {
        let (event_type, payload) = domain::events::to_stored(&event).expect("payload");
        let new = infra::store::NewEvent {
            event_id: domain::EventId::from_uuid(uuid::Uuid::now_v7()),
            event_type,
            schema_version: 1,
            occurred_at: chrono::Utc::now(),
            payload,
            metadata: domain::Metadata::system(uuid::Uuid::now_v7()),
        };
        let batch = infra::store::AppendBatch::default().stream(
            user.stream(),
            infra::store::ExpectedVersion::Any,
            vec![new],
        );
        store.append(batch).await.expect("append");
    }
    world.assert_session_over(&old).await;
    let fresh = login(&world, APP_A, "nia").await;
    assert_eq!(world.me(&fresh.access).await.status(), 200);
}

async fn refresh_fails_after_the_idle_lifetime(world: World) {
    let session = login(&world, APP_A, "ida").await;
    // Six days idle: still fine, and the refresh restarts the idle clock.
    world.clock.advance(chrono::Duration::days(6));
    let rotated = json_of(world.refresh(&session.refresh).await).await;
    world.clock.advance(chrono::Duration::days(6));
    let rotated = json_of(world.refresh(&text(&rotated, "refresh_token")).await).await;
    let access = text(&rotated, "access_token");
    assert_eq!(world.me(&access).await.status(), 200);
    // Seven days without a refresh: over, for refresh, access token and introspection.
    world.clock.advance(chrono::Duration::days(7));
    assert_problem(
        world.refresh(&text(&rotated, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(world.me(&access).await, 401, "unauthorized").await;
    let introspected = world.introspect_as(ADMIN_TOKEN, &access).await;
    assert_eq!(json_of(introspected).await, json!({ "active": false }));
}

async fn refresh_fails_after_the_absolute_lifetime(world: World) {
    let session = login(&world, APP_A, "abe").await;
    let mut refresh_token = session.refresh.clone();
    // Refreshed every five days: never idle, yet over thirty days after the login.
    for _ in 0..5 {
        world.clock.advance(chrono::Duration::days(5));
        let rotated = json_of(world.refresh(&refresh_token).await).await;
        refresh_token = text(&rotated, "refresh_token");
    }
    world.clock.advance(chrono::Duration::days(5));
    assert_problem(world.refresh(&refresh_token).await, 401, "unauthorized").await;
    // A new login starts a new lifetime.
    let again = login(&world, APP_A, "abe").await;
    assert_eq!(world.refresh(&again.refresh).await.status(), 200);
}

async fn my_sessions(world: &World, access: &str) -> Vec<Value> {
    world.wait_for_projections(Duration::from_secs(5)).await;
    world.items(access, "/v1/me/sessions").await
}

/// Asked at once after the login, with no wait for the read models: the caller's own session is
/// listed (the route waits for the read model to hold it).
async fn my_sessions_right_after_login_hold_this_one(world: World) {
    for attempt in 0..5 {
        let me = login(&world, APP_A, &format!("hasty-{attempt}")).await;
        let listed = world.get_json(&me.access, "/v1/me/sessions").await;
        let items = listed["items"].as_array().expect("items");
        assert!(
            items
                .iter()
                .any(|s| s["session_id"] == me.session_id.as_str() && s["current"] == true),
            "attempt {attempt}: {listed}"
        );
    }
}

async fn users_list_and_end_their_own_sessions(world: World) {
    let phone = login(&world, APP_A, "uma").await;
    let tablet = login(&world, APP_A, "uma").await;
    // The same person in the sibling app (one unionid): the same user.
    let sibling = login(&world, APP_B, "uma").await;
    assert_eq!(sibling.user_id, phone.user_id);
    let stranger = login(&world, APP_A, "victor").await;

    let items = my_sessions(&world, &phone.access).await;
    assert_eq!(items.len(), 3, "{items:?}");
    let ids: Vec<String> = items.iter().map(|s| text(s, "session_id")).collect();
    assert_eq!(
        ids,
        [
            sibling.session_id.clone(),
            tablet.session_id.clone(),
            phone.session_id.clone()
        ],
        "newest first"
    );
    for item in &items {
        assert_eq!(
            item["current"],
            text(item, "session_id") == phone.session_id
        );
        assert_eq!(item["client_ip"], "127.0.0.1", "{item}");
        assert_eq!(item["device"]["platform"], "ios", "{item}");
        assert_eq!(item["device"]["user_agent"], IPHONE, "{item}");
        assert!(item["created_at"].is_string(), "{item}");
        assert!(item["last_refreshed_at"].is_null(), "{item}");
    }
    assert_eq!(items[2]["appid"], APP_A);
    assert_eq!(items[0]["appid"], APP_B);

    // A refresh shows as last refreshed.
    let rotated = json_of(world.refresh(&tablet.refresh).await).await;
    let items = my_sessions(&world, &phone.access).await;
    let refreshed = items
        .iter()
        .find(|s| s["session_id"] == tablet.session_id.as_str())
        .expect("tablet listed");
    assert!(refreshed["last_refreshed_at"].is_string(), "{refreshed}");

    // Someone else's session, one that never was, or no UUID: refused alike.
    let theirs = format!("/v1/me/sessions/{}", stranger.session_id);
    assert_problem(
        world.delete_as(&phone.access, &theirs).await,
        404,
        "not_found",
    )
    .await;
    let nobody = format!("/v1/me/sessions/{}", uuid::Uuid::now_v7());
    assert_problem(
        world.delete_as(&phone.access, &nobody).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        world
            .delete_as(&phone.access, "/v1/me/sessions/tablet")
            .await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(world.me(&stranger.access).await.status(), 200);

    // Ending the tablet's session from the phone.
    let path = format!("/v1/me/sessions/{}", tablet.session_id);
    assert_eq!(world.delete_as(&phone.access, &path).await.status(), 204);
    assert_problem(
        world.refresh(&text(&rotated, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    let tablet_access = text(&rotated, "access_token");
    assert_problem(world.me(&tablet_access).await, 401, "unauthorized").await;
    assert_eq!(
        world.delete_as(&phone.access, &path).await.status(),
        204,
        "again"
    );
    let items = my_sessions(&world, &phone.access).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items
        .iter()
        .all(|s| s["session_id"] != tablet.session_id.as_str()));
    assert_revoked(&world, &[&tablet], "user_action").await;

    // Sessions past their lifetime are not listed.
    world.clock.advance(chrono::Duration::days(8));
    let fresh = login(&world, APP_A, "uma").await;
    let items = my_sessions(&world, &fresh.access).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["current"], true);

    let anonymous = world.get("/v1/me/sessions").await;
    assert_problem(anonymous, 401, "unauthorized").await;
    for bad in ["limit=0", "limit=ten", "cursor=garbage", "colour=blue"] {
        assert_problem(
            world
                .get_as(&fresh.access, &format!("/v1/me/sessions?{bad}"))
                .await,
            400,
            "invalid_request",
        )
        .await;
    }
}

async fn admins_list_and_revoke_a_users_sessions(world: World) {
    let read = world.api_key("admin:read").await;
    let write = world.api_key("admin:write").await;
    let phone = login(&world, APP_A, "wes").await;
    let tablet = login(&world, APP_A, "wes").await;
    let list = format!("/v1/admin/users/{}/sessions", phone.user_id);
    let revoke = format!("/v1/admin/users/{}/sessions/revoke", phone.user_id);

    world.wait_for_projections(Duration::from_secs(5)).await;
    let items = world.items(&read, &list).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        items.iter().all(|s| s.get("current").is_none()),
        "{items:?}"
    );
    assert_eq!(items[0]["session_id"], tablet.session_id.as_str());

    assert_problem(
        world
            .post_as(&read, &revoke, json!({ "reason": "x" }))
            .await,
        403,
        "forbidden",
    )
    .await;
    for bad in [
        json!({ "reason": "" }),
        json!({}),
        json!({ "reason": "x", "more": 1 }),
    ] {
        assert_problem(
            world.post_as(&write, &revoke, bad).await,
            400,
            "invalid_request",
        )
        .await;
    }
    let nobody = uuid::Uuid::now_v7();
    assert_problem(
        world
            .post_as(
                &write,
                &format!("/v1/admin/users/{nobody}/sessions/revoke"),
                json!({ "reason": "x" }),
            )
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        world
            .get_as(&read, &format!("/v1/admin/users/{nobody}/sessions"))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        world.get_as(&read, "/v1/admin/users/42/sessions").await,
        400,
        "invalid_request",
    )
    .await;
    assert_problem(
        world
            .post_as(
                &write,
                "/v1/admin/users/42/sessions/revoke",
                json!({ "reason": "x" }),
            )
            .await,
        400,
        "invalid_request",
    )
    .await;

    let note = "phone reported stolen by Wes Example";
    let answer = json_of(
        world
            .post_as(&write, &revoke, json!({ "reason": note }))
            .await,
    )
    .await;
    let mut revoked: Vec<String> = answer["revoked"]
        .as_array()
        .expect("revoked")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect();
    revoked.sort();
    let mut expected = vec![phone.session_id.clone(), tablet.session_id.clone()];
    expected.sort();
    assert_eq!(revoked, expected);
    for old in [&phone, &tablet] {
        world.assert_session_over(old).await;
    }
    let again = json_of(
        world
            .post_as(&write, &revoke, json!({ "reason": note }))
            .await,
    )
    .await;
    assert_eq!(again["revoked"], json!([]));

    // Audited with the key as the actor; the free-text note is personal data, never shown.
    world.wait_for_projections(Duration::from_secs(5)).await;
    let audit = world
        .get_json(
            &read,
            &format!(
                "/v1/admin/audit?user_id={}&action=SessionRevoked",
                phone.user_id
            ),
        )
        .await;
    let entries = audit["items"].as_array().expect("items");
    assert_eq!(entries.len(), 2, "{audit}");
    assert!(
        entries
            .iter()
            .all(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("admin:"))),
        "{audit}"
    );
    assert!(!audit.to_string().contains("Wes Example"), "{audit}");
    for payload in revocations(&world, &[&phone.session_id, &tablet.session_id]).await {
        assert_eq!(payload["reason"], "admin_action");
        assert_ne!(payload["note"], note, "the analytics view redacts the note");
    }
    let page = world.get_json(&read, &list).await;
    assert_eq!(page["items"], json!([]));
    // The user may log in again.
    let fresh = login(&world, APP_A, "wes").await;
    assert_eq!(world.me(&fresh.access).await.status(), 200);
}

async fn erasure_revokes_every_session_and_an_erased_user_cannot_be_blocked(world: World) {
    let write = world.api_key("admin:read,admin:write").await;
    let phone = login(&world, APP_A, "eve").await;
    let tablet = login(&world, APP_A, "eve").await;
    let user = format!("/v1/admin/users/{}", phone.user_id);
    let erased = world.delete_as(&write, &user).await;
    assert_eq!(erased.status(), 204);

    assert_revoked(&world, &[&phone, &tablet], "user_erased").await;
    for action in ["block", "unblock", "sessions/revoke"] {
        let refused = world
            .admin_action(&write, &phone.user_id, action, "x")
            .await;
        assert_problem(refused, 409, "conflict").await;
    }
    let page = world.get_json(&write, &format!("{user}/sessions")).await;
    assert_eq!(page["items"], json!([]));
    assert_problem(world.refresh(&phone.refresh).await, 401, "unauthorized").await;
}
