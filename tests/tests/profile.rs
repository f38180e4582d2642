//! Profile, phone and the authorization lifecycle; erasure; through the real simulator.

use std::time::Duration;

use domain::AppId;
use identity_tests::{assert_problem, authorize_body, both_backends, World, APP_A};
use infra::wechat::sim::{Api, Simulator};
use serde_json::{json, Value};

both_backends! {
    World:
    profile_and_phone_round_trip,
    a_newer_login_makes_old_encrypted_data_stale,
    bad_encrypted_data_is_named,
    fill_in_profile_is_validated,
    erasure_leaves_no_personal_data_in_clear,
    concurrent_phone_bindings_share_one_access_token,
}

const NICKNAME: &str = "诸葛亮 Kongming";
const CITY: &str = "Wolong-Test-City";

/// What the tests' users share through `wx.getUserProfile()`.
fn shared_profile() -> Value {
    json!({ "nickName": NICKNAME, "city": CITY, "province": "Sichuan" })
}

async fn send(
    world: &World,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = world
        .http
        .request(method, world.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("service answers")
}

async fn me(world: &World, token: &str) -> Value {
    let answer = send(world, reqwest::Method::GET, token, "/v1/me", None).await;
    assert_eq!(answer.status(), 200);
    answer.json().await.expect("JSON")
}

fn token(login: &Value) -> String {
    login["access_token"].as_str().expect("token").to_owned()
}

async fn profile_and_phone_round_trip(world: World) {
    let login = world.login(APP_A, "liang").await;
    let access = token(&login);
    let wx = world
        .get_user_profile(APP_A, "liang", shared_profile())
        .await;
    let answer = send(
        &world,
        reqwest::Method::POST,
        &access,
        "/v1/me/profile/authorize",
        Some(authorize_body(&wx)),
    )
    .await;
    assert_eq!(answer.status(), 204, "{:?}", answer.text().await);
    let shown = me(&world, &access).await;
    assert_eq!(shown["profile"]["nickname"], NICKNAME, "{shown}");
    assert_eq!(shown["profile"]["city"], CITY);
    assert!(shown["unionid"].is_string(), "{shown}");

    let appid = AppId::parse(APP_A).expect("appid");
    let code = world
        .simulator
        .phone_code(&appid, "liang")
        .expect("phone code");
    let bound = send(
        &world,
        reqwest::Method::POST,
        &access,
        "/v1/me/phone",
        Some(json!({ "code": code })),
    )
    .await;
    assert_eq!(bound.status(), 204, "{:?}", bound.text().await);
    let number = Simulator::phone_number_of("liang");
    let shown = me(&world, &access).await;
    assert_eq!(
        shown["phone"]["pure_phone_number"],
        number.as_str(),
        "{shown}"
    );
    // The code was single use.
    let again = send(
        &world,
        reqwest::Method::POST,
        &access,
        "/v1/me/phone",
        Some(json!({ "code": code })),
    )
    .await;
    assert_problem(again, 400, "invalid_code").await;

    // Admins find the user by phone (keyed hash), without the number being stored in clear.
    world.wait_for_projections(Duration::from_secs(5)).await;
    let admin = world.api_key("admin:read").await;
    let found: Value = world
        .get_as(&admin, &format!("/v1/admin/users?phone=%2B86{number}"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        found["items"][0]["user_id"], login["user"]["user_id"],
        "{found}"
    );
    assert!(
        found["items"][0]["profile"].get("sealed").is_none(),
        "{found}"
    );
    let user_id = login["user"]["user_id"].as_str().expect("user id");
    let detail: Value = world
        .get_as(&admin, &format!("/v1/admin/users/{user_id}"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(detail["profile"]["nickname"], NICKNAME, "{detail}");

    let withdrawn = send(
        &world,
        reqwest::Method::DELETE,
        &access,
        "/v1/me/authorizations/phone",
        None,
    )
    .await;
    assert_eq!(withdrawn.status(), 204);
    let shown = me(&world, &access).await;
    assert!(shown["phone"].is_null(), "{shown}");
    assert_eq!(shown["profile"]["nickname"], NICKNAME);
    let twice = send(
        &world,
        reqwest::Method::DELETE,
        &access,
        "/v1/me/authorizations/phone",
        None,
    )
    .await;
    assert_problem(twice, 404, "not_found").await;
    let withdrawn = send(
        &world,
        reqwest::Method::DELETE,
        &access,
        "/v1/me/authorizations/profile",
        None,
    )
    .await;
    assert_eq!(withdrawn.status(), 204);
    assert!(me(&world, &access).await["profile"].is_null());
    let unknown = send(
        &world,
        reqwest::Method::DELETE,
        &access,
        "/v1/me/authorizations/email",
        None,
    )
    .await;
    assert_problem(unknown, 400, "invalid_request").await;

    world.wait_for_projections(Duration::from_secs(5)).await;
    let gone: Value = world
        .get_as(&admin, &format!("/v1/admin/users?phone=%2B86{number}"))
        .await
        .json()
        .await
        .expect("JSON");
    assert!(
        gone["items"].as_array().expect("items").is_empty(),
        "{gone}"
    );
}

async fn a_newer_login_makes_old_encrypted_data_stale(world: World) {
    let login = world.login(APP_A, "stale").await;
    let wx = world
        .get_user_profile(APP_A, "stale", shared_profile())
        .await;
    // The user logs in again (a fresh session_key) before the old payload arrives.
    let newer = world.login(APP_A, "stale").await;
    for access in [token(&login), token(&newer)] {
        let answer = send(
            &world,
            reqwest::Method::POST,
            &access,
            "/v1/me/profile/authorize",
            Some(authorize_body(&wx)),
        )
        .await;
        let problem = assert_problem(answer, 400, "signature_mismatch").await;
        assert!(
            problem["hint"]
                .as_str()
                .is_some_and(|h| h.contains("log in")),
            "{problem}"
        );
    }
    // With the signature intact but the ciphertext from before, decryption is what fails.
    let fresh = world
        .get_user_profile(APP_A, "stale", shared_profile())
        .await;
    let mut mixed = authorize_body(&fresh);
    mixed["encrypted_data"] = wx["encryptedData"].clone();
    mixed["iv"] = wx["iv"].clone();
    let answer = send(
        &world,
        reqwest::Method::POST,
        &token(&newer),
        "/v1/me/profile/authorize",
        Some(mixed),
    )
    .await;
    let problem = assert_problem(answer, 400, "decrypt_failed").await;
    assert!(problem["hint"].is_string(), "{problem}");
}

async fn bad_encrypted_data_is_named(world: World) {
    let login = world.login(APP_A, "mallory").await;
    let access = token(&login);
    let wx = world
        .get_user_profile(APP_A, "mallory", shared_profile())
        .await;
    let cases = [
        (
            "signature",
            json!("0000000000000000000000000000000000000000"),
            "signature_mismatch",
        ),
        (
            "encrypted_data",
            json!("not base64!"),
            "malformed_encrypted_data",
        ),
        ("encrypted_data", json!("AAAA"), "malformed_encrypted_data"),
        ("iv", json!("AAAA"), "malformed_encrypted_data"),
        ("iv", json!("%%%"), "malformed_encrypted_data"),
    ];
    for (field, value, code) in cases {
        let mut body = authorize_body(&wx);
        body[field] = value;
        let answer = send(
            &world,
            reqwest::Method::POST,
            &access,
            "/v1/me/profile/authorize",
            Some(body),
        )
        .await;
        assert_problem(answer, 400, code).await;
    }
    let mut missing = authorize_body(&wx);
    missing.as_object_mut().expect("object").remove("iv");
    let answer = send(
        &world,
        reqwest::Method::POST,
        &access,
        "/v1/me/profile/authorize",
        Some(missing),
    )
    .await;
    assert_problem(answer, 400, "invalid_request").await;
    // Untouched, it works.
    let answer = send(
        &world,
        reqwest::Method::POST,
        &access,
        "/v1/me/profile/authorize",
        Some(authorize_body(&wx)),
    )
    .await;
    assert_eq!(answer.status(), 204);
}

async fn fill_in_profile_is_validated(world: World) {
    let access = token(&world.login(APP_A, "fill").await);
    for body in [
        json!({}),
        json!({ "nickname": "" }),
        json!({ "nickname": "bell\u{7}" }),
        json!({ "nickname": "x".repeat(65) }),
        json!({ "avatar_url": "javascript:alert(1)" }),
        json!({ "avatar_url": "https://" }),
        json!({ "avatar_url": "ftp://example.com/a.png" }),
        json!({ "nickname": 7 }),
        json!({ "colour": "blue" }),
    ] {
        let answer = send(
            &world,
            reqwest::Method::PUT,
            &access,
            "/v1/me/profile",
            Some(body.clone()),
        )
        .await;
        assert_problem(answer, 400, "invalid_request").await;
    }
    let ok = send(
        &world,
        reqwest::Method::PUT,
        &access,
        "/v1/me/profile",
        Some(json!({ "nickname": "小明" })),
    )
    .await;
    assert_eq!(ok.status(), 204);
    let ok = send(
        &world,
        reqwest::Method::PUT,
        &access,
        "/v1/me/profile",
        Some(json!({ "avatar_url": "https://cdn.example.com/a.png" })),
    )
    .await;
    assert_eq!(ok.status(), 204);
    let shown = me(&world, &access).await;
    assert_eq!(
        shown["profile"],
        json!({ "nickname": "小明", "avatar_url": "https://cdn.example.com/a.png" })
    );
}

async fn erasure_leaves_no_personal_data_in_clear(world: World) {
    let login = world.login(APP_A, "forget-me").await;
    let access = token(&login);
    let user_id = login["user"]["user_id"]
        .as_str()
        .expect("user id")
        .to_owned();
    let wx = world
        .get_user_profile(APP_A, "forget-me", shared_profile())
        .await;
    assert_eq!(
        send(
            &world,
            reqwest::Method::POST,
            &access,
            "/v1/me/profile/authorize",
            Some(authorize_body(&wx))
        )
        .await
        .status(),
        204
    );
    let appid = AppId::parse(APP_A).expect("appid");
    let code = world
        .simulator
        .phone_code(&appid, "forget-me")
        .expect("phone code");
    assert_eq!(
        send(
            &world,
            reqwest::Method::POST,
            &access,
            "/v1/me/phone",
            Some(json!({ "code": code }))
        )
        .await
        .status(),
        204
    );
    world.wait_for_projections(Duration::from_secs(5)).await;

    let admin = world.api_key("admin:read,admin:write").await;
    let erased = world
        .http
        .delete(world.url(&format!("/v1/admin/users/{user_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("answer");
    assert_eq!(erased.status(), 204);
    assert_problem(
        send(&world, reqwest::Method::GET, &access, "/v1/me", None).await,
        401,
        "unauthorized",
    )
    .await;
    world.wait_for_projections(Duration::from_secs(5)).await;
    let shown: Value = world
        .get_as(&admin, &format!("/v1/admin/users/{user_id}"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(shown["status"], "erased", "{shown}");

    let phone = Simulator::phone_number_of("forget-me");
    let needles = [NICKNAME, CITY, "Sichuan", phone.as_str()];
    let haystack = match world.backend {
        identity_tests::Backend::Sqlite => {
            let path = world
                .database_url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .to_owned();
            let mut bytes = Vec::new();
            for suffix in ["", "-wal"] {
                if let Ok(more) = std::fs::read(format!("{path}{suffix}")) {
                    bytes.extend(more);
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        identity_tests::Backend::Postgres => {
            testkit::dump_postgres_tables(&world.database_url).await
        }
    };
    assert!(haystack.len() > 1000, "read the database");
    for needle in needles {
        assert!(!haystack.contains(needle), "{needle:?} is stored in clear");
    }

    // The person may come back: a new login registers a new user.
    let back = world.login(APP_A, "forget-me").await;
    assert_ne!(back["user"]["user_id"], user_id.as_str());
    assert_eq!(back["user"]["is_new_user"], true);
}

async fn concurrent_phone_bindings_share_one_access_token(world: World) {
    let appid = AppId::parse(APP_A).expect("appid");
    let mut logins = Vec::new();
    for user in ["p1", "p2"] {
        logins.push((user, token(&world.login(APP_A, user).await)));
    }
    let before = world.simulator.calls(Api::StableToken);
    let mut answers = Vec::new();
    for (user, access) in &logins {
        let code = world
            .simulator
            .phone_code(&appid, user)
            .expect("phone code");
        answers.push(send(
            &world,
            reqwest::Method::POST,
            access,
            "/v1/me/phone",
            Some(json!({ "code": code })),
        ));
    }
    for answer in futures::future::join_all(answers).await {
        assert_eq!(answer.status(), 204);
    }
    assert_eq!(world.simulator.calls(Api::StableToken) - before, 1);
}
