//! Sessions end: lifetimes, block and unblock, erasure, and session management by the user and
//! by admins.

use std::time::Duration;

use identity_tests::{assert_problem, both_backends, json_of, World, ADMIN_TOKEN, APP_A, APP_B};
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

async fn refresh(world: &World, refresh_token: &str) -> reqwest::Response {
    world
        .http
        .post(world.url("/v1/token/refresh"))
        .json(&json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .expect("service answers")
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().expect(key).to_owned()
}

/// A login's tokens and ids.
struct Login {
    user_id: String,
    session_id: String,
    access: String,
    refresh: String,
}

/// Logs `user` in from an iPhone.
async fn login(world: &World, appid: &str, user: &str) -> Login {
    let code = world.wx_login(appid, user).await;
    let answer = json_of(
        world
            .http
            .post(world.url("/v1/wechat/login"))
            .header("user-agent", IPHONE)
            .json(&json!({ "appid": appid, "code": code }))
            .send()
            .await
            .expect("service answers"),
    )
    .await;
    let access = text(&answer, "access_token");
    let introspected = introspect(world, &access).await;
    Login {
        user_id: text(&answer["user"], "user_id"),
        session_id: text(&introspected, "sid"),
        access,
        refresh: text(&answer, "refresh_token"),
    }
}

async fn introspect(world: &World, token: &str) -> Value {
    json_of(
        world
            .post_as(
                ADMIN_TOKEN,
                "/v1/token/introspect",
                json!({ "token": token }),
            )
            .await,
    )
    .await
}

/// The `SessionRevoked` events of the log as analytics sees them, (session id, payload), once
/// each of `sessions` has one (readers on PostgreSQL see a commit once older transactions end).
async fn revocations(world: &World, sessions: &[&str]) -> Vec<(String, Value)> {
    let key = world.api_key("events:read").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = json_of(world.get_as(&key, "/v1/events?after=0&limit=1000").await).await;
        let found: Vec<(String, Value)> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["event_type"] == "SessionRevoked")
            .map(|e| {
                let stream = text(e, "stream_id");
                let session = stream.strip_prefix("session-").expect("a session stream");
                (session.to_owned(), e["payload"].clone())
            })
            .collect();
        if sessions.iter().all(|s| found.iter().any(|(id, _)| id == s)) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no SessionRevoked for every one of {sessions:?}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn block_then_unblock_revives_no_session(world: World) {
    let admin = world.api_key("admin:write").await;
    let phone = login(&world, APP_A, "bob").await;
    let tablet = login(&world, APP_A, "bob").await;
    let block = format!("/v1/admin/users/{}/block", phone.user_id);
    let unblock = format!("/v1/admin/users/{}/unblock", phone.user_id);
    let blocked = json_of(
        world
            .post_as(&admin, &block, json!({ "reason": "fraud" }))
            .await,
    )
    .await;
    assert_eq!(blocked["changed"], true);

    // Every open session got its own SessionRevoked, with the reason.
    let revoked = revocations(&world, &[&phone.session_id, &tablet.session_id]).await;
    for session in [&phone.session_id, &tablet.session_id] {
        let (_, payload) = revoked
            .iter()
            .find(|(id, _)| id == session)
            .unwrap_or_else(|| panic!("no SessionRevoked for {session}: {revoked:?}"));
        assert_eq!(payload["reason"], "user_blocked", "{payload}");
    }

    let unblocked = json_of(
        world
            .post_as(&admin, &unblock, json!({ "reason": "appeal" }))
            .await,
    )
    .await;
    assert_eq!(unblocked["changed"], true);
    for old in [&phone, &tablet] {
        assert_problem(refresh(&world, &old.refresh).await, 401, "unauthorized").await;
        assert_problem(
            world.get_as(&old.access, "/v1/me").await,
            401,
            "unauthorized",
        )
        .await;
        assert_eq!(
            introspect(&world, &old.access).await,
            json!({ "active": false })
        );
    }
    // A new login works, and a second block/unblock round leaves it dead too.
    let fresh = login(&world, APP_A, "bob").await;
    assert_eq!(world.get_as(&fresh.access, "/v1/me").await.status(), 200);
    assert_eq!(refresh(&world, &fresh.refresh).await.status(), 200);
    json_of(
        world
            .post_as(&admin, &block, json!({ "reason": "again" }))
            .await,
    )
    .await;
    json_of(
        world
            .post_as(&admin, &unblock, json!({ "reason": "sorry" }))
            .await,
    )
    .await;
    assert_problem(
        world.get_as(&fresh.access, "/v1/me").await,
        401,
        "unauthorized",
    )
    .await;
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
    assert_problem(refresh(&world, &old.refresh).await, 401, "unauthorized").await;
    assert_problem(
        world.get_as(&old.access, "/v1/me").await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        introspect(&world, &old.access).await,
        json!({ "active": false })
    );
    let fresh = login(&world, APP_A, "nia").await;
    assert_eq!(world.get_as(&fresh.access, "/v1/me").await.status(), 200);
}

async fn refresh_fails_after_the_idle_lifetime(world: World) {
    let session = login(&world, APP_A, "ida").await;
    // Six days idle: still fine, and the refresh restarts the idle clock.
    world.clock.advance(chrono::Duration::days(6));
    let rotated = json_of(refresh(&world, &session.refresh).await).await;
    world.clock.advance(chrono::Duration::days(6));
    let rotated = json_of(refresh(&world, &text(&rotated, "refresh_token")).await).await;
    let access = text(&rotated, "access_token");
    assert_eq!(world.get_as(&access, "/v1/me").await.status(), 200);
    // Seven days without a refresh: over, for refresh, access token and introspection.
    world.clock.advance(chrono::Duration::days(7));
    assert_problem(
        refresh(&world, &text(&rotated, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(world.get_as(&access, "/v1/me").await, 401, "unauthorized").await;
    assert_eq!(
        introspect(&world, &access).await,
        json!({ "active": false })
    );
}

async fn refresh_fails_after_the_absolute_lifetime(world: World) {
    let session = login(&world, APP_A, "abe").await;
    let mut refresh_token = session.refresh.clone();
    // Refreshed every five days: never idle, yet over thirty days after the login.
    for _ in 0..5 {
        world.clock.advance(chrono::Duration::days(5));
        let rotated = json_of(refresh(&world, &refresh_token).await).await;
        refresh_token = text(&rotated, "refresh_token");
    }
    world.clock.advance(chrono::Duration::days(5));
    assert_problem(refresh(&world, &refresh_token).await, 401, "unauthorized").await;
    // A new login starts a new lifetime.
    let again = login(&world, APP_A, "abe").await;
    assert_eq!(refresh(&world, &again.refresh).await.status(), 200);
}

async fn my_sessions(world: &World, access: &str) -> Vec<Value> {
    world.wait_for_projections(Duration::from_secs(5)).await;
    let page = json_of(world.get_as(access, "/v1/me/sessions").await).await;
    page["items"].as_array().expect("items").clone()
}

async fn delete_as(world: &World, credential: &str, path: &str) -> reqwest::Response {
    world
        .http
        .delete(world.url(path))
        .bearer_auth(credential)
        .send()
        .await
        .expect("service answers")
}

/// Asked at once after the login, with no wait for the read models: the caller's own session is
/// listed (the route waits for the read model to hold it).
async fn my_sessions_right_after_login_hold_this_one(world: World) {
    for attempt in 0..5 {
        let me = login(&world, APP_A, &format!("hasty-{attempt}")).await;
        let listed = json_of(world.get_as(&me.access, "/v1/me/sessions").await).await;
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
    let rotated = json_of(refresh(&world, &tablet.refresh).await).await;
    let items = my_sessions(&world, &phone.access).await;
    let refreshed = items
        .iter()
        .find(|s| s["session_id"] == tablet.session_id.as_str())
        .expect("tablet listed");
    assert!(refreshed["last_refreshed_at"].is_string(), "{refreshed}");

    // Someone else's session, one that never was, or no UUID: refused alike.
    let theirs = format!("/v1/me/sessions/{}", stranger.session_id);
    assert_problem(
        delete_as(&world, &phone.access, &theirs).await,
        404,
        "not_found",
    )
    .await;
    let nobody = format!("/v1/me/sessions/{}", uuid::Uuid::now_v7());
    assert_problem(
        delete_as(&world, &phone.access, &nobody).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        delete_as(&world, &phone.access, "/v1/me/sessions/tablet").await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(world.get_as(&stranger.access, "/v1/me").await.status(), 200);

    // Ending the tablet's session from the phone.
    let path = format!("/v1/me/sessions/{}", tablet.session_id);
    assert_eq!(delete_as(&world, &phone.access, &path).await.status(), 204);
    assert_problem(
        refresh(&world, &text(&rotated, "refresh_token")).await,
        401,
        "unauthorized",
    )
    .await;
    let tablet_access = text(&rotated, "access_token");
    assert_problem(
        world.get_as(&tablet_access, "/v1/me").await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(
        delete_as(&world, &phone.access, &path).await.status(),
        204,
        "again"
    );
    let items = my_sessions(&world, &phone.access).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items
        .iter()
        .all(|s| s["session_id"] != tablet.session_id.as_str()));
    let (_, payload) = revocations(&world, &[&tablet.session_id])
        .await
        .into_iter()
        .find(|(id, _)| *id == tablet.session_id)
        .expect("SessionRevoked");
    assert_eq!(payload["reason"], "user_action");

    // Sessions past their lifetime are not listed.
    world.clock.advance(chrono::Duration::days(8));
    let fresh = login(&world, APP_A, "uma").await;
    let items = my_sessions(&world, &fresh.access).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["current"], true);

    let anonymous = world
        .http
        .get(world.url("/v1/me/sessions"))
        .send()
        .await
        .expect("answer");
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
    let page = json_of(world.get_as(&read, &list).await).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{page}");
    assert!(items.iter().all(|s| s.get("current").is_none()), "{page}");
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
        assert_problem(refresh(&world, &old.refresh).await, 401, "unauthorized").await;
        assert_problem(
            world.get_as(&old.access, "/v1/me").await,
            401,
            "unauthorized",
        )
        .await;
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
    let audit = json_of(
        world
            .get_as(
                &read,
                &format!(
                    "/v1/admin/audit?user_id={}&action=SessionRevoked",
                    phone.user_id
                ),
            )
            .await,
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
    for (_, payload) in revocations(&world, &[&phone.session_id, &tablet.session_id]).await {
        assert_eq!(payload["reason"], "admin_action");
        assert_ne!(payload["note"], note, "the analytics view redacts the note");
    }
    let page = json_of(world.get_as(&read, &list).await).await;
    assert_eq!(page["items"], json!([]));
    // The user may log in again.
    let fresh = login(&world, APP_A, "wes").await;
    assert_eq!(world.get_as(&fresh.access, "/v1/me").await.status(), 200);
}

async fn erasure_revokes_every_session_and_an_erased_user_cannot_be_blocked(world: World) {
    let write = world.api_key("admin:read,admin:write").await;
    let phone = login(&world, APP_A, "eve").await;
    let tablet = login(&world, APP_A, "eve").await;
    let user = format!("/v1/admin/users/{}", phone.user_id);
    let erased = delete_as(&world, &write, &user).await;
    assert_eq!(erased.status(), 204);

    let revoked = revocations(&world, &[&phone.session_id, &tablet.session_id]).await;
    for session in [&phone.session_id, &tablet.session_id] {
        let (_, payload) = revoked
            .iter()
            .find(|(id, _)| id == session)
            .unwrap_or_else(|| panic!("no SessionRevoked for {session}: {revoked:?}"));
        assert_eq!(payload["reason"], "user_erased");
    }
    for action in ["block", "unblock", "sessions/revoke"] {
        assert_problem(
            world
                .post_as(
                    &write,
                    &format!("{user}/{action}"),
                    json!({ "reason": "x" }),
                )
                .await,
            409,
            "conflict",
        )
        .await;
    }
    let page = json_of(world.get_as(&write, &format!("{user}/sessions")).await).await;
    assert_eq!(page["items"], json!([]));
    assert_problem(refresh(&world, &phone.refresh).await, 401, "unauthorized").await;
}
