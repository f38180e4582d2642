//! WeChat content security: the nickname check on `PUT /v1/me/profile`, and the message push
//! (`/v1/wechat/push/{appid}`) that carries the avatar checks' verdicts.
//!
//! Tests marked "needs the simulator's content APIs" talk to its `msg_sec_check`,
//! `media_check_async`, `/sim/content` and `/sim/push` (and, for the avatar, to the upload
//! route): they pass once those are in.

use std::time::Duration;

use api::config::AppList;
use domain::{AvatarId, UserId};
use identity_tests::{assert_problem, both_backends, World, APP_A, APP_B, PUSH_TOKEN_A};
use infra::store::PendingMediaCheck;
use infra::wechat::push::push_signature;
use infra::wechat::sim::Api;
use serde_json::{json, Value};

both_backends! {
    World:
    a_risky_nickname_is_refused_and_nothing_stored,
    a_nickname_to_review_is_stored_and_flagged,
    an_app_with_checks_off_makes_no_call,
    a_wechat_outage_stores_the_nickname_flagged,
    a_push_without_the_right_signature_changes_nothing,
    the_push_url_verification_echoes,
    a_risky_verdict_is_recorded_once,
    a_risky_avatar_is_removed_from_the_profile,
    pending_checks_stay_bounded,
}

/// The query WeChat signs a push with.
fn signed_query(token: &str, extra: &str) -> String {
    signed_query_at(token, chrono::Utc::now().timestamp(), extra)
}

fn signed_query_at(token: &str, timestamp: i64, extra: &str) -> String {
    let (timestamp, nonce) = (timestamp.to_string(), "1234567");
    let signature = push_signature(token, &timestamp, nonce);
    format!("signature={signature}&timestamp={timestamp}&nonce={nonce}{extra}")
}

fn verdict(trace_id: &str, suggest: &str, label: u32) -> Value {
    json!({
        "ToUserName": "gh_0123456789ab", "FromUserName": "o_wechat", "CreateTime": 1_700_000_000,
        "MsgType": "event", "Event": "wxa_media_check", "appid": APP_A, "trace_id": trace_id,
        "version": 2, "detail": [], "errcode": 0, "errmsg": "ok",
        "result": {"suggest": suggest, "label": label},
    })
}

async fn push(world: &World, query: &str, body: &Value) -> reqwest::Response {
    world
        .http
        .post(world.url(&format!("/v1/wechat/push/{APP_A}?{query}")))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("push sent")
}

async fn put_nickname(world: &World, access: &str, nickname: &str) -> reqwest::Response {
    world
        .put_as(access, "/v1/me/profile", json!({ "nickname": nickname }))
        .await
}

/// The `review` of every `ProfileUpdated` so far.
async fn reviews(world: &World) -> Vec<Value> {
    world
        .events_of_type("ProfileUpdated")
        .await
        .iter()
        .map(|e| e.payload.get("review").cloned().unwrap_or(Value::Null))
        .collect()
}

/// Needs the simulator's content APIs (its default risky words include `risky`).
async fn a_risky_nickname_is_refused_and_nothing_stored(world: World) {
    let login = world.login(APP_A, "mallory").await;
    let answer = put_nickname(&world, &login.access, "a risky name").await;
    assert_problem(answer, 422, "content_rejected").await;
    assert!(world.events_of_type("ProfileUpdated").await.is_empty());
    let me = world.get_json(&login.access, "/v1/me").await;
    assert!(me["profile"].is_null(), "{me}");
}

/// Needs the simulator's content APIs (`/sim/content`).
async fn a_nickname_to_review_is_stored_and_flagged(world: World) {
    let sim = world.config().wechat_api_base;
    let set = world
        .http
        .post(format!("{sim}/sim/content"))
        .json(&json!({ "review_words": ["borderline"] }))
        .send()
        .await
        .expect("sim reached");
    assert!(set.status().is_success(), "{:?}", set.text().await);
    let login = world.login(APP_A, "bea").await;
    let answer = put_nickname(&world, &login.access, "borderline bea").await;
    assert_eq!(answer.status(), 204, "{:?}", answer.text().await);
    // Another field's change leaves the flag standing; a new nickname that passes ends it.
    let uploaded = world.upload_avatar(&login.access, ONE_PIXEL_PNG).await;
    assert_eq!(uploaded.status(), 200, "{:?}", uploaded.text().await);
    let answer = put_nickname(&world, &login.access, "plain bea").await;
    assert_eq!(answer.status(), 204);
    assert_eq!(
        reviews(&world).await,
        [json!(["nickname"]), json!(["nickname"]), Value::Null]
    );
    let me = world.get_json(&login.access, "/v1/me").await;
    assert_eq!(me["profile"]["nickname"], "plain bea", "{me}");
}

async fn an_app_with_checks_off_makes_no_call(mut world: World) {
    world.app = world
        .spawn_instance(|config| {
            config.content_checks_disabled =
                serde_json::from_value::<AppList>(json!(APP_A)).expect("app list");
        })
        .await;
    let login = world.login(APP_A, "carol").await;
    let answer = put_nickname(&world, &login.access, "risky carol").await;
    assert_eq!(answer.status(), 204, "{:?}", answer.text().await);
    assert_eq!(
        world.simulator.calls(Api::StableToken),
        0,
        "no access token asked"
    );
    assert_eq!(reviews(&world).await, [Value::Null]);
    // The same on an app with checks on asks WeChat (for its access token first).
    let other = world.login(APP_B, "carol").await;
    put_nickname(&world, &other.access, "carol").await;
    assert_eq!(world.simulator.calls(Api::StableToken), 1);
}

async fn a_wechat_outage_stores_the_nickname_flagged(world: World) {
    world
        .inject(json!({ "api": "stable_token", "errcode": -1, "times": 0 }))
        .await;
    let login = world.login(APP_A, "dave").await;
    let answer = put_nickname(&world, &login.access, "dave").await;
    assert_eq!(answer.status(), 204, "{:?}", answer.text().await);
    assert_eq!(reviews(&world).await, [json!(["nickname"])]);
    let me = world.get_json(&login.access, "/v1/me").await;
    assert_eq!(me["profile"]["nickname"], "dave", "{me}");
    // Admins see the flag.
    world.wait_for_projections(Duration::from_secs(5)).await;
    let admin = world.api_key("admin:read").await;
    let user = world
        .get_json(&admin, &format!("/v1/admin/users/{}", login.user_id))
        .await;
    assert_eq!(user["profile"]["review"], json!(["nickname"]), "{user}");
}

async fn a_push_without_the_right_signature_changes_nothing(world: World) {
    let login = world.login(APP_A, "erin").await;
    let user_id = UserId::parse(&login.user_id).expect("a user id");
    let store = world.store().await;
    let now = chrono::Utc::now();
    let check = PendingMediaCheck {
        appid: APP_A.into(),
        user_id,
        avatar_id: AvatarId::new_random(),
        created_at: now,
    };
    store
        .record_media_check("trace-erin", &check, now - chrono::Duration::days(7))
        .await
        .expect("the store answers");
    let risky = verdict("trace-erin", "risky", 20002);
    let before = world.log().await.len();
    for query in [
        signed_query("wrongToken", ""),
        signed_query(PUSH_TOKEN_A, "").replace("timestamp=", "timestamp=1"),
        // Signed, but an hour old: a query seen once cannot be replayed later.
        signed_query_at(PUSH_TOKEN_A, chrono::Utc::now().timestamp() - 3600, ""),
        "timestamp=1&nonce=2".to_owned(),
        String::new(),
    ] {
        assert_problem(push(&world, &query, &risky).await, 401, "unauthorized").await;
    }
    assert_eq!(world.log().await.len(), before, "nothing recorded");
    assert!(store
        .media_check(APP_A, "trace-erin")
        .await
        .expect("the store answers")
        .is_some());
    // No push URL for an app without a token, or not configured.
    let query = signed_query(PUSH_TOKEN_A, "");
    for appid in [APP_B, "wxf000000000000009", "nope"] {
        let answer = world
            .http
            .post(world.url(&format!("/v1/wechat/push/{appid}?{query}")))
            .body(risky.to_string())
            .send()
            .await
            .expect("the store answers");
        assert_problem(answer, 404, "not_found").await;
    }
    // Over 64 KiB.
    let big = json!({ "MsgType": "text", "Content": "x".repeat(70 * 1024) });
    assert_problem(push(&world, &query, &big).await, 413, "payload_too_large").await;
}

async fn the_push_url_verification_echoes(world: World) {
    let query = signed_query(PUSH_TOKEN_A, "&echostr=5837997610893447193");
    let answer = world.get(&format!("/v1/wechat/push/{APP_A}?{query}")).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("a body"), "5837997610893447193");
    let forged = signed_query("wrongToken", "&echostr=1");
    let answer = world
        .get(&format!("/v1/wechat/push/{APP_A}?{forged}"))
        .await;
    assert_problem(answer, 401, "unauthorized").await;
}

async fn a_risky_verdict_is_recorded_once(world: World) {
    let login = world.login(APP_A, "frank").await;
    let user_id = UserId::parse(&login.user_id).expect("a user id");
    let avatar_id = AvatarId::new_random();
    let store = world.store().await;
    let now = chrono::Utc::now();
    let check = PendingMediaCheck {
        appid: APP_A.into(),
        user_id,
        avatar_id,
        created_at: now,
    };
    store
        .record_media_check("trace-frank", &check, now - chrono::Duration::days(7))
        .await
        .expect("the store answers");
    let query = signed_query(PUSH_TOKEN_A, "");
    let risky = verdict("trace-frank", "risky", 20002);
    // WeChat retries: the same verdict twice, and one for a trace nobody submitted.
    for body in [&risky, &risky, &verdict("trace-unknown", "risky", 20002)] {
        let answer = push(&world, &query, body).await;
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.expect("a body"), "success");
    }
    let rejected = world.events_of_type("AvatarRejected").await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].payload["avatar_id"], avatar_id.to_string());
    assert_eq!(rejected[0].payload["label"], 20002);
    assert_eq!(rejected[0].stream_id.as_str(), user_id.stream().as_str());
    assert_eq!(rejected[0].metadata.actor, domain::Actor::System);
    assert!(store
        .media_check(APP_A, "trace-frank")
        .await
        .expect("the store answers")
        .is_none());
    // Other events are acknowledged.
    let other = json!({ "MsgType": "event", "Event": "user_enter_tempsession" });
    assert_eq!(push(&world, &query, &other).await.status(), 200);
}

/// One pending check per user, none past the horizon, none after an erasure.
async fn pending_checks_stay_bounded(world: World) {
    let store = world.store().await;
    let now = chrono::Utc::now();
    let horizon = now - chrono::Duration::days(7);
    let mut users = Vec::new();
    for name in ["hal", "ida"] {
        let login = world.login(APP_A, name).await;
        users.push((
            login.access.clone(),
            UserId::parse(&login.user_id).expect("a user id"),
        ));
    }
    let check = |user_id, created_at| PendingMediaCheck {
        appid: APP_A.into(),
        user_id,
        avatar_id: AvatarId::new_random(),
        created_at,
    };
    let (hal, ida) = (users[0].1, users[1].1);
    let old = check(ida, now - chrono::Duration::days(8));
    store
        .record_media_check("ida-old", &old, horizon - chrono::Duration::days(2))
        .await
        .expect("the store answers");
    store
        .record_media_check("hal-1", &check(hal, now), horizon)
        .await
        .expect("the store answers");
    store
        .record_media_check("hal-2", &check(hal, now), horizon)
        .await
        .expect("the store answers");
    let pending = |trace: &'static str| {
        let store = store.clone();
        async move {
            store
                .media_check(APP_A, trace)
                .await
                .expect("the store answers")
                .is_some()
        }
    };
    assert!(!pending("ida-old").await, "purged past the horizon");
    assert!(
        !pending("hal-1").await,
        "its image is not stored: forgotten at the user's next submission"
    );
    assert!(pending("hal-2").await);
    assert!(
        store
            .media_check(APP_B, "hal-2")
            .await
            .expect("the store answers")
            .is_none(),
        "another app's push does not find it"
    );
    let erased = world.delete_as(&users[0].0, "/v1/me").await;
    assert_eq!(erased.status(), 204, "{:?}", erased.text().await);
    assert!(!pending("hal-2").await, "deleted with the user");
}

/// Needs the avatar upload (`POST /v1/me/avatar`) and the simulator's content APIs, which
/// fetch the image and push the verdict.
async fn a_risky_avatar_is_removed_from_the_profile(world: World) {
    let risky = world
        .http
        .post(format!("{}/sim/content", world.sim_url()))
        .json(&json!({ "images": "risky" }))
        .send()
        .await
        .expect("sim reached");
    assert!(risky.status().is_success(), "{:?}", risky.text().await);
    let login = world.login(APP_A, "grace").await;
    let boundary = "content-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(ONE_PIXEL_PNG);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let uploaded = world
        .http
        .post(world.url("/v1/me/avatar"))
        .bearer_auth(&login.access)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("the store answers");
    assert_eq!(uploaded.status(), 200, "{:?}", uploaded.text().await);
    let avatar_url = uploaded.json::<Value>().await.expect("the store answers")["avatar_url"]
        .as_str()
        .expect("avatar_url")
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let me = world.get_json(&login.access, "/v1/me").await;
        if me["profile"].get("avatar_url").is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "avatar still shown: {me}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(world.events_of_type("AvatarRejected").await.len(), 1);
    let gone = world.http.get(&avatar_url).send().await.expect("sent");
    assert_eq!(gone.status(), 404);
}

/// A 1×1 PNG.
const ONE_PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
