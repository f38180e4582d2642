//! Profile, phone and the authorization lifecycle; erasure; through the real simulator.

use std::time::Duration;

use identity_tests::{
    assert_mentions, assert_problem, authorize_body, both_backends, Login, World, APP_A,
};
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

/// What `wx.getUserProfile()` gives `user` on APP_A to share.
async fn profile_of(world: &World, user: &str) -> Value {
    world.get_user_profile(APP_A, user, shared_profile()).await
}

/// `user` logged in on APP_A, then what `wx.getUserProfile()` gives them to share.
async fn sharing(world: &World, user: &str) -> (Login, Value) {
    let login = world.login(APP_A, user).await;
    (login, profile_of(world, user).await)
}

async fn profile_and_phone_round_trip(world: World) {
    let (login, wx) = sharing(&world, "liang").await;
    let access = login.access.clone();
    let answer = world
        .post_as(&access, "/v1/me/profile/authorize", authorize_body(&wx))
        .await;
    assert_eq!(answer.status(), 204, "{:?}", answer.text().await);
    let shown = world.get_json(&access, "/v1/me").await;
    assert_eq!(shown["profile"]["nickname"], NICKNAME, "{shown}");
    assert_eq!(shown["profile"]["city"], CITY);
    assert!(shown["unionid"].is_string(), "{shown}");

    let code = world.bind_phone(&access, APP_A, "liang").await;
    let number = Simulator::phone_number_of("liang");
    let shown = world.get_json(&access, "/v1/me").await;
    assert_eq!(
        shown["phone"]["pure_phone_number"],
        number.as_str(),
        "{shown}"
    );
    // The code was single use.
    let again = world
        .post_as(&access, "/v1/me/phone", json!({ "code": code }))
        .await;
    assert_problem(again, 400, "invalid_code").await;

    // Admins find the user by phone (keyed hash), without the number being stored in clear.
    world.wait_for_projections(Duration::from_secs(5)).await;
    let admin = world.api_key("admin:read").await;
    let found = world
        .get_json(&admin, &format!("/v1/admin/users?phone=%2B86{number}"))
        .await;
    assert_eq!(
        found["items"][0]["user_id"], login["user"]["user_id"],
        "{found}"
    );
    assert!(
        found["items"][0]["profile"].get("sealed").is_none(),
        "{found}"
    );
    let user_id = login["user"]["user_id"].as_str().expect("user id");
    let detail = world
        .get_json(&admin, &format!("/v1/admin/users/{user_id}"))
        .await;
    assert_eq!(detail["profile"]["nickname"], NICKNAME, "{detail}");

    let withdrawn = world
        .delete_as(&access, "/v1/me/authorizations/phone")
        .await;
    assert_eq!(withdrawn.status(), 204);
    let shown = world.get_json(&access, "/v1/me").await;
    assert!(shown["phone"].is_null(), "{shown}");
    assert_eq!(shown["profile"]["nickname"], NICKNAME);
    let twice = world
        .delete_as(&access, "/v1/me/authorizations/phone")
        .await;
    assert_problem(twice, 404, "not_found").await;
    let withdrawn = world
        .delete_as(&access, "/v1/me/authorizations/profile")
        .await;
    assert_eq!(withdrawn.status(), 204);
    assert!(world.get_json(&access, "/v1/me").await["profile"].is_null());
    let unknown = world
        .delete_as(&access, "/v1/me/authorizations/email")
        .await;
    assert_problem(unknown, 400, "invalid_request").await;

    world.wait_for_projections(Duration::from_secs(5)).await;
    let gone = world
        .items(&admin, &format!("/v1/admin/users?phone=%2B86{number}"))
        .await;
    assert!(gone.is_empty(), "{gone:?}");
}

async fn a_newer_login_makes_old_encrypted_data_stale(world: World) {
    let (login, wx) = sharing(&world, "stale").await;
    // The user logs in again (a fresh session_key) before the old payload arrives.
    let newer = world.login(APP_A, "stale").await;
    for access in [&login.access, &newer.access] {
        let answer = world
            .post_as(access, "/v1/me/profile/authorize", authorize_body(&wx))
            .await;
        let problem = assert_problem(answer, 400, "signature_mismatch").await;
        assert_mentions(&problem, "hint", "log in");
    }
    // With the signature intact but the ciphertext from before, decryption is what fails.
    let fresh = profile_of(&world, "stale").await;
    let mut mixed = authorize_body(&fresh);
    mixed["encrypted_data"] = wx["encryptedData"].clone();
    mixed["iv"] = wx["iv"].clone();
    let answer = world
        .post_as(&newer.access, "/v1/me/profile/authorize", mixed)
        .await;
    let problem = assert_problem(answer, 400, "decrypt_failed").await;
    assert!(problem["hint"].is_string(), "{problem}");
}

async fn bad_encrypted_data_is_named(world: World) {
    let (login, wx) = sharing(&world, "mallory").await;
    let access = login.access.clone();
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
        let answer = world
            .post_as(&access, "/v1/me/profile/authorize", body)
            .await;
        assert_problem(answer, 400, code).await;
    }
    let mut missing = authorize_body(&wx);
    missing.as_object_mut().expect("object").remove("iv");
    let answer = world
        .post_as(&access, "/v1/me/profile/authorize", missing)
        .await;
    assert_problem(answer, 400, "invalid_request").await;
    // Untouched, it works.
    let answer = world
        .post_as(&access, "/v1/me/profile/authorize", authorize_body(&wx))
        .await;
    assert_eq!(answer.status(), 204);
}

async fn fill_in_profile_is_validated(world: World) {
    let access = world.login(APP_A, "fill").await.access;
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
        let answer = world.put_as(&access, "/v1/me/profile", body.clone()).await;
        assert_problem(answer, 400, "invalid_request").await;
    }
    let ok = world
        .put_as(&access, "/v1/me/profile", json!({ "nickname": "小明" }))
        .await;
    assert_eq!(ok.status(), 204);
    let ok = world
        .put_as(
            &access,
            "/v1/me/profile",
            json!({ "avatar_url": "https://cdn.example.com/a.png" }),
        )
        .await;
    assert_eq!(ok.status(), 204);
    let shown = world.get_json(&access, "/v1/me").await;
    assert_eq!(
        shown["profile"],
        json!({ "nickname": "小明", "avatar_url": "https://cdn.example.com/a.png" })
    );
}

async fn erasure_leaves_no_personal_data_in_clear(world: World) {
    let (login, wx) = sharing(&world, "forget-me").await;
    let access = login.access.clone();
    let user_id = login.user_id.clone();
    assert_eq!(
        world
            .post_as(&access, "/v1/me/profile/authorize", authorize_body(&wx))
            .await
            .status(),
        204
    );
    world.bind_phone(&access, APP_A, "forget-me").await;
    world.wait_for_projections(Duration::from_secs(5)).await;

    let admin = world.api_key("admin:read,admin:write").await;
    let erased = world
        .delete_as(&admin, &format!("/v1/admin/users/{user_id}"))
        .await;
    assert_eq!(erased.status(), 204);
    assert_problem(world.me(&access).await, 401, "unauthorized").await;
    world.wait_for_projections(Duration::from_secs(5)).await;
    let shown = world
        .get_json(&admin, &format!("/v1/admin/users/{user_id}"))
        .await;
    assert_eq!(shown["status"], "erased", "{shown}");

    let phone = Simulator::phone_number_of("forget-me");
    let needles = [NICKNAME, CITY, "Sichuan", phone.as_str()];
    let haystack = world.database_text().await;
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
    let mut logins = Vec::new();
    for user in ["p1", "p2"] {
        logins.push((user, world.login(APP_A, user).await.access));
    }
    let before = world.simulator.calls(Api::StableToken);
    let mut answers = Vec::new();
    for (user, access) in &logins {
        let code = world.phone_code(APP_A, user);
        answers.push(world.post_as(access, "/v1/me/phone", json!({ "code": code })));
    }
    for answer in futures::future::join_all(answers).await {
        assert_eq!(answer.status(), 204);
    }
    assert_eq!(world.simulator.calls(Api::StableToken) - before, 1);
}
