//! Issue 11 item 6, "done means", tried as an attacker would: after an admin erase, the
//! person's openids, unionid, nickname, region, phone, user agent and block reasons appear
//! nowhere in the admin API, `/v1/events`, the SQLite files (database, WAL, shared memory) or a
//! `pg_dump` of PostgreSQL; while they lived, login, linking by unionid across apps and admin
//! search by openid, unionid and phone worked, and admins could read them.

use std::time::Duration;

use identity_tests::{authorize_body, both_backends, database_text, Login, World, APP_A, APP_B};
use infra::wechat::sim::Simulator;
use reqwest::Method;
use serde_json::{json, Value};

both_backends! {
    World:
    erasure_leaves_the_person_unreadable_everywhere,
    erasing_oneself_leaves_nothing_either,
    an_older_log_is_sealed_at_start,
    values_that_look_sealed_are_sealed_and_erased,
    a_phone_rebound_after_erasure_links_nothing,
}

const PERSON: &str = "ghost-7731";
const AGENT: &str = "Mozilla/5.0 (iPhone; GhostPhone-7731) MicroMessenger/8.0.44";
const NICKNAME: &str = "Ghost Nickname 幽灵";
const CITY: &str = "Ghost-Test-City";
const BLOCK_REASON: &str = "ghost-block-reason-5150";
const UNBLOCK_REASON: &str = "ghost-unblock-reason-6160";

async fn login(world: &World, appid: &str) -> Login {
    world.login_from(appid, PERSON, AGENT).await
}

/// `POST path` as the user, from the person's device.
async fn as_user(world: &World, token: &str, path: &str, body: Value) -> reqwest::StatusCode {
    let call = world
        .call(Method::POST, path)
        .bearer(token)
        .user_agent(AGENT);
    call.json(&body).send().await.status()
}

/// Block and unblock (or any admin action) with a reason, successfully.
async fn act(world: &World, key: &str, user_id: &str, actions: &[&str], reason: &str) {
    for action in actions {
        let status = world
            .admin_action(key, user_id, action, reason)
            .await
            .status();
        assert!(status.is_success(), "{action}: {status}");
    }
}

/// An admin erases the user; the read models and the log have caught up when it returns.
async fn erase(world: &World, key: &str, user_id: &str) {
    let path = format!("/v1/admin/users/{user_id}");
    assert_eq!(world.delete_as(key, &path).await.status(), 204);
    world.wait_for_projections(Duration::from_secs(10)).await;
    testkit::wait_until_log_readable(&world.database_url).await;
}

/// Asserts that none of `needles` appears in any of `places` (what it is, its text).
fn assert_nowhere<'a>(needles: impl IntoIterator<Item = &'a str>, places: &[(&str, &str)]) {
    for needle in needles {
        for (place, text) in places {
            assert!(!text.contains(needle), "{needle:?} is in {place}");
        }
    }
}

async fn text(world: &World, key: &str, path: &str) -> String {
    let answer = world.get_as(key, path).await;
    assert_eq!(answer.status(), 200, "{path}");
    answer.text().await.expect("body")
}

/// Everything the admin API and the event stream answer about the person and everyone.
async fn everything_readable(world: &World, key: &str, user_id: &str) -> String {
    let mut seen = String::new();
    for path in [
        format!("/v1/admin/users/{user_id}"),
        format!("/v1/admin/users/{user_id}/logins"),
        format!("/v1/admin/audit?user_id={user_id}&limit=200"),
        "/v1/admin/users?limit=200".to_owned(),
        "/v1/admin/logins?limit=200".to_owned(),
        "/v1/admin/audit?limit=200".to_owned(),
        "/v1/events?after=0&limit=1000".to_owned(),
    ] {
        seen.push_str(&text(world, key, &path).await);
        seen.push('\n');
    }
    seen
}

async fn erasure_leaves_the_person_unreadable_everywhere(world: World) {
    let admin = world.api_key("admin:read,admin:write,events:read").await;
    let in_a = login(&world, APP_A).await;
    let in_b = login(&world, APP_B).await;
    let user_id = in_a.user_id.clone();
    assert_eq!(
        in_b["user"]["user_id"],
        user_id.as_str(),
        "linked by unionid"
    );
    let openid_a = in_a["user"]["openid"].as_str().expect("openid").to_owned();
    let openid_b = in_b["user"]["openid"].as_str().expect("openid").to_owned();
    let unionid = in_a["user"]["unionid"]
        .as_str()
        .expect("unionid")
        .to_owned();
    let access = in_a.access.clone();
    // Someone else, who stays.
    let bystander = world.login(APP_A, "bystander").await;

    let shared = json!({"nickName": NICKNAME, "city": CITY});
    let wx = world.get_user_profile(APP_A, PERSON, shared).await;
    let profile = authorize_body(&wx);
    assert_eq!(
        as_user(&world, &access, "/v1/me/profile/authorize", profile).await,
        204
    );
    let code = world.phone_code(APP_A, PERSON);
    assert_eq!(
        as_user(&world, &access, "/v1/me/phone", json!({"code": code})).await,
        204
    );
    let phone = Simulator::phone_number_of(PERSON);
    act(&world, &admin, &user_id, &["block"], BLOCK_REASON).await;
    act(&world, &admin, &user_id, &["unblock"], UNBLOCK_REASON).await;
    world.wait_for_projections(Duration::from_secs(10)).await;

    // While the person lives: search by openid, unionid and phone finds them, and admins read
    // their identifiers, device and the block reason.
    let lookups = [
        format!("openid={openid_a}"),
        format!("unionid={unionid}"),
        format!("phone=%2B86{phone}"),
    ];
    let by_app = format!("appid={APP_B}&openid={openid_b}");
    for query in std::iter::once(by_app).chain(lookups.clone()) {
        let found = world
            .get_json(&admin, &format!("/v1/admin/users?{query}"))
            .await;
        assert_eq!(
            found["items"][0]["user_id"],
            user_id.as_str(),
            "{query}: {found}"
        );
        assert_eq!(found["items"].as_array().map(Vec::len), Some(1), "{query}");
    }
    let alive = everything_readable(&world, &admin, &user_id).await;
    for visible in [
        &openid_a,
        &openid_b,
        &unionid,
        AGENT,
        BLOCK_REASON,
        UNBLOCK_REASON,
    ] {
        assert!(
            alive.contains(visible),
            "admins should see {visible:?} while the user lives"
        );
    }
    // Sealed from the moment they were written: not in clear in the files even now.
    // Analytics never did: it sees user_id only.
    let files = world.database_text().await;
    let events = text(&world, &admin, "/v1/events?after=0&limit=1000").await;
    assert!(events.contains(&user_id));
    let sealed = [
        &openid_a,
        &openid_b,
        &unionid,
        AGENT,
        BLOCK_REASON,
        NICKNAME,
        &phone,
    ];
    assert_nowhere(
        sealed,
        &[("the database", &files), ("the analytics stream", &events)],
    );

    erase(&world, &admin, &user_id).await;

    let needles = [
        openid_a.as_str(),
        openid_b.as_str(),
        unionid.as_str(),
        NICKNAME,
        CITY,
        phone.as_str(),
        "GhostPhone-7731",
        BLOCK_REASON,
        UNBLOCK_REASON,
    ];
    let answers = everything_readable(&world, &admin, &user_id).await;
    assert!(answers.contains("erased"), "{answers}");
    let files = world.database_text().await;
    assert!(files.len() > 10_000, "read the database");
    assert_nowhere(
        needles,
        &[("an answer", &answers), ("the database", &files)],
    );
    for query in lookups {
        let found = world
            .get_json(&admin, &format!("/v1/admin/users?{query}"))
            .await;
        assert_eq!(
            found["items"],
            json!([]),
            "{query} still finds the erased user"
        );
    }

    // The bystander is untouched, and the person may come back as someone new.
    let other = bystander["user"]["user_id"].as_str().expect("id");
    let shown = text(&world, &admin, &format!("/v1/admin/users/{other}")).await;
    assert!(shown.contains(bystander["user"]["openid"].as_str().expect("openid")));
    let back = login(&world, APP_A).await;
    assert_ne!(back["user"]["user_id"], user_id.as_str());
}

/// `DELETE /v1/me`: the same erasure, asked by the person (fill-in nickname and avatar URL).
async fn erasing_oneself_leaves_nothing_either(world: World) {
    const AVATAR: &str = "https://cdn.example.com/selfie-4412.png";
    const FILLED_IN: &str = "Self Eraser 4412";
    let admin = world.api_key("admin:read,events:read").await;
    let me = world.login_from(APP_A, "self-eraser", AGENT).await;
    let openid = me["user"]["openid"].as_str().expect("openid");
    let unionid = me["user"]["unionid"].as_str().expect("unionid");
    let filled = json!({ "nickname": FILLED_IN, "avatar_url": AVATAR });
    let filled = world.put_as(&me.access, "/v1/me/profile", filled).await;
    assert_eq!(filled.status(), 204);
    world.wait_for_projections(Duration::from_secs(10)).await;

    let gone = world.delete_as(&me.access, "/v1/me").await;
    assert_eq!(gone.status(), 204);
    world.wait_for_projections(Duration::from_secs(10)).await;
    testkit::wait_until_log_readable(&world.database_url).await;

    let answers = everything_readable(&world, &admin, &me.user_id).await;
    let files = world.database_text().await;
    assert_nowhere(
        [openid, unionid, FILLED_IN, AVATAR, "GhostPhone-7731"],
        &[("an answer", &answers), ("the database", &files)],
    );
}

/// A log written before sealing (clear v1 events and metadata, clear claims) is sealed by the
/// one-time migration when the service starts on it: the person is still found by openid and
/// unionid and shown to admins, the erased one is blanked, and neither is left in clear in the
/// database files or the event stream.
async fn an_older_log_is_sealed_at_start(world: World) {
    use domain::{Actor, AppId, Claim, EventId, Metadata, OpenId, SessionId, StreamId, UnionId};
    use infra::store::{AppendBatch, ClaimKey, ExpectedVersion, NewEvent};
    use uuid::Uuid;

    const OPENID: &str = "o_legacy_openid_8841";
    const UNIONID: &str = "u_legacy_unionid_8841";
    const ERASED_OPENID: &str = "o_legacy_erased_9952";
    const LEGACY_AGENT: &str = "Mozilla/5.0 (Android 9; LegacyPhone-8841) MicroMessenger/7.0.1";
    let url = testkit::fresh_url(world.backend)
        .await
        .expect("a second database");
    let store = infra::store::connect(&url).await.expect("store");
    let (user, erased) = (Uuid::now_v7(), Uuid::now_v7());
    let session = SessionId::from_uuid(Uuid::now_v7());
    let metadata = || Metadata {
        actor: Actor::User(domain::UserId::from_uuid(user)),
        appid: Some(AppId::parse(APP_A).expect("appid")),
        client_ip: Some("198.51.100.77".into()),
        user_agent: Some(LEGACY_AGENT.into()),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    };
    let event = |event_type: &str, payload: Value| NewEvent {
        event_id: EventId::from_uuid(Uuid::now_v7()),
        event_type: event_type.into(),
        schema_version: 1,
        occurred_at: chrono::Utc::now(),
        payload,
        metadata: metadata(),
    };
    let clear = |claim: Claim| {
        let (kind, value) = claim.key();
        ClaimKey { kind, value }
    };
    let user_id = domain::UserId::from_uuid(user);
    store
        .append(
            AppendBatch::default()
                .stream(
                    user_id.stream(),
                    ExpectedVersion::NoStream,
                    vec![
                        event(
                            "UserRegistered",
                            json!({"user_id": user, "appid": APP_A, "openid": OPENID}),
                        ),
                        event(
                            "UnionIdLinked",
                            json!({"unionid": UNIONID, "source": "code2_session"}),
                        ),
                    ],
                )
                .stream(
                    session.stream(),
                    ExpectedVersion::NoStream,
                    vec![event(
                        "UserLoggedIn",
                        json!({
                        "session_id": session.to_string(), "user_id": user, "appid": APP_A,
                        "openid": OPENID, "is_new_user": true, "client_ip": "198.51.100.77",
                        "device": LEGACY_AGENT}),
                    )],
                )
                .claim(
                    clear(Claim::WeChatAccount {
                        appid: AppId::parse(APP_A).expect("appid"),
                        openid: OpenId::parse(OPENID).expect("openid"),
                    }),
                    user_id,
                )
                .claim(
                    clear(Claim::UnionId(UnionId::parse(UNIONID).expect("u"))),
                    user_id,
                ),
        )
        .await
        .expect("old events");
    store
        .append(AppendBatch::default().stream(
            StreamId::from_stored(format!("user-{erased}")),
            ExpectedVersion::NoStream,
            vec![
                event(
                    "UserRegistered",
                    json!({"user_id": erased, "appid": APP_A, "openid": ERASED_OPENID}),
                ),
                event("UserErased", json!({})),
            ],
        ))
        .await
        .expect("an old erasure");
    drop(store);
    testkit::wait_until_log_readable(&url).await;

    let upgraded = world
        .spawn_instance(|config| config.database_url = url.clone())
        .await;
    // An API key of the upgraded database (the world's keys live in its own).
    let admin = {
        let store = infra::store::connect(&url).await.expect("store");
        let scopes = infra::api_keys::parse_scopes("admin:read,events:read").expect("scopes");
        let key = infra::api_keys::generate("test", scopes, chrono::Utc::now());
        store.insert_api_key(&key.stored).await.expect("key");
        key.token
    };
    let get = |path: String| {
        let call = world.call_at(&upgraded.base, Method::GET, &path);
        let call = call.bearer(&admin);
        async move {
            let answer = call.send().await;
            assert_eq!(answer.status(), 200, "{path}");
            answer.text().await.expect("body")
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = get(format!("/v1/admin/users/{user}/logins")).await;
        if shown.contains(LEGACY_AGENT) {
            break get(format!("/v1/admin/users/{user}")).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never projected: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(shown.contains(OPENID) && shown.contains(UNIONID), "{shown}");
    for query in [
        format!("appid={APP_A}&openid={OPENID}"),
        format!("unionid={UNIONID}"),
    ] {
        let found = get(format!("/v1/admin/users?{query}")).await;
        assert!(found.contains(&user.to_string()), "{query}: {found}");
    }

    let events = get("/v1/events?after=0&limit=100".to_owned()).await;
    let files = database_text(&url).await;
    assert_nowhere(
        [
            OPENID,
            UNIONID,
            ERASED_OPENID,
            "LegacyPhone-8841",
            "198.51.100.77",
        ],
        &[("the event stream", &events), ("the database", &files)],
    );
}

/// A clear value starting with `pd1.` (the sealed fields' prefix) is sealed like any other: a
/// block reason, a revocation note and a User-Agent header an attacker or an admin chose.
async fn values_that_look_sealed_are_sealed_and_erased(world: World) {
    const REASON: &str = "pd1. Dave Li";
    const NOTE: &str = "pd1. Dave Li's phone was stolen";
    const LOOKALIKE_AGENT: &str = "pd1.DaveLiAgent/1.0";
    let admin = world.api_key("admin:read,admin:write,events:read").await;
    let me = world.login_from(APP_A, "dave-li", LOOKALIKE_AGENT).await;
    let user_id = me.user_id.clone();
    act(&world, &admin, &user_id, &["sessions/revoke"], NOTE).await;
    act(&world, &admin, &user_id, &["block", "unblock"], REASON).await;
    world.wait_for_projections(Duration::from_secs(10)).await;
    let files = world.database_text().await;
    assert_nowhere(["Dave Li", "DaveLiAgent"], &[("the database", &files)]);

    erase(&world, &admin, &user_id).await;
    let answers = everything_readable(&world, &admin, &user_id).await;
    let files = world.database_text().await;
    assert_nowhere(
        ["Dave Li", "DaveLiAgent"],
        &[("an answer", &answers), ("the database", &files)],
    );
}

/// Every string in a stream's stored events (payloads and metadata), as the database holds them.
async fn stored_strings(world: &World, user_id: &str) -> Vec<String> {
    fn leaves(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
            Value::Object(fields) => fields.values().for_each(|v| leaves(v, out)),
            _ => {}
        }
    }
    let stream = format!("user-{user_id}");
    let mut out = Vec::new();
    for event in world.log().await {
        if event.stream_id.as_str() == stream {
            if event.event_type == "PhoneNumberBound" {
                let keys: Vec<&String> =
                    event.payload.as_object().expect("object").keys().collect();
                assert_eq!(
                    keys,
                    ["phone"],
                    "PhoneNumberBound carries only the sealed phone"
                );
            }
            leaves(&event.payload, &mut out);
            leaves(
                &serde_json::to_value(&event.metadata).expect("JSON"),
                &mut out,
            );
        }
    }
    out
}

/// The phone's look-up hash is not in the immutable log: a person who binds a phone, is erased,
/// comes back and binds the same phone leaves two streams with nothing in common, and admin
/// search by phone finds only the living user.
async fn a_phone_rebound_after_erasure_links_nothing(world: World) {
    const WHO: &str = "phone-rebinder";
    let admin = world.api_key("admin:read,admin:write").await;
    let bind = |token: String| {
        let code = world.phone_code(APP_A, WHO);
        let world = &world;
        async move { as_user(world, &token, "/v1/me/phone", json!({ "code": code })).await }
    };
    let first = world.login_from(APP_A, WHO, AGENT).await;
    let first_id = first.user_id.clone();
    assert_eq!(bind(first.access.clone()).await, 204);
    let erased = world
        .delete_as(&admin, &format!("/v1/admin/users/{first_id}"))
        .await;
    assert_eq!(erased.status(), 204);

    let second = world.login_from(APP_A, WHO, AGENT).await;
    let second_id = second.user_id.clone();
    assert_ne!(first_id, second_id, "registered afresh");
    assert_eq!(bind(second.access.clone()).await, 204);
    world.wait_for_projections(Duration::from_secs(10)).await;

    let phone = Simulator::phone_number_of(WHO);
    let found: Value = serde_json::from_str(
        &text(
            &world,
            &admin,
            &format!("/v1/admin/users?phone=%2B86{phone}"),
        )
        .await,
    )
    .expect("JSON");
    let ids: Vec<&Value> = found["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| &u["user_id"])
        .collect();
    assert_eq!(ids, [&Value::from(second_id.as_str())], "{found}");

    let before = stored_strings(&world, &first_id).await;
    let after = stored_strings(&world, &second_id).await;
    for value in &before {
        // The app id and the system's own words may recur; nothing long and personal may.
        if value.len() >= 20 && value != APP_A && uuid::Uuid::try_parse(value).is_err() {
            assert!(
                !after.contains(value),
                "{value:?} links the erased user's stream to the new one"
            );
        }
    }
}
