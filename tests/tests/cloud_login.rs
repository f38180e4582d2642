//! `POST /v1/wechat/cloud-login`: signed, replay-proof, and the shipped cloud function works.

use std::path::Path;
use std::process::Command;

use identity_tests::{assert_problem, both_backends, Signed, World, APP_A, APP_B, CLOUD_SECRET_A};
use serde_json::{json, Value};

both_backends! {
    World:
    a_signed_context_logs_the_user_in,
    forged_stale_and_replayed_requests_are_refused,
    the_shipped_cloud_function_logs_in,
}

fn sign(secret: &str, body: &Value, timestamp: i64) -> Signed {
    Signed::new(secret, body, timestamp)
}

async fn post(world: &World, signed: &Signed) -> reqwest::Response {
    world.cloud_login_at(&world.app.base, signed).await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn a_signed_context_logs_the_user_in(world: World) {
    // The same person logged in with a code before: the cloud context finds that user.
    let by_code = world.login(APP_A, "cloudy").await;
    let openid = by_code["user"]["openid"].clone();
    let unionid = by_code["user"]["unionid"].clone();
    let signed = sign(
        CLOUD_SECRET_A,
        &json!({ "appid": APP_A, "openid": openid, "unionid": unionid }),
        now(),
    );
    let answer = post(&world, &signed).await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["user"]["user_id"], by_code["user"]["user_id"]);
    assert_eq!(body["user"]["is_new_user"], false);
    let me = world
        .get_as(body["access_token"].as_str().expect("token"), "/v1/me")
        .await;
    assert_eq!(me.status(), 200);

    // A new person without a unionid registers.
    let signed = sign(
        CLOUD_SECRET_A,
        &json!({ "appid": APP_A, "openid": "o_cloud_only_person", "unionid": null }),
        now(),
    );
    let body: Value = post(&world, &signed).await.json().await.expect("JSON");
    assert_eq!(body["user"]["is_new_user"], true, "{body}");
}

async fn forged_stale_and_replayed_requests_are_refused(world: World) {
    let context = json!({ "appid": APP_A, "openid": "o_replay" });
    let forged = sign("not-the-secret", &context, now());
    assert_problem(post(&world, &forged).await, 401, "unauthorized").await;

    let stale = sign(CLOUD_SECRET_A, &context, now() - 3600);
    assert_problem(post(&world, &stale).await, 401, "unauthorized").await;
    // 2^63 seconds away: the difference from our clock must not wrap back into the window.
    let wrapping = sign(CLOUD_SECRET_A, &context, now() + i64::MIN);
    assert_problem(post(&world, &wrapping).await, 401, "unauthorized").await;

    let good = sign(CLOUD_SECRET_A, &context, now());
    assert_eq!(post(&world, &good).await.status(), 200);
    let replayed = post(&world, &good).await;
    assert_problem(replayed, 401, "unauthorized").await;

    // A body changed after signing.
    let mut tampered = sign(CLOUD_SECRET_A, &context, now());
    tampered.body = json!({ "appid": APP_A, "openid": "o_someone_else" }).to_string();
    assert_problem(post(&world, &tampered).await, 401, "unauthorized").await;

    // An app without a cloud secret, an unknown app, bad input.
    for (appid, openid, status, code) in [
        (APP_B, "o1", 403, "forbidden"),
        ("wxffffffffffffffff", "o1", 400, "unknown_app"),
        (APP_A, "has space", 400, "invalid_request"),
    ] {
        let signed = sign(
            CLOUD_SECRET_A,
            &json!({ "appid": appid, "openid": openid }),
            now(),
        );
        assert_problem(post(&world, &signed).await, status, code).await;
    }
    let mut bad_nonce = sign(CLOUD_SECRET_A, &context, now());
    bad_nonce.nonce = "x".into();
    assert_problem(post(&world, &bad_nonce).await, 400, "invalid_request").await;
    let unsigned = world.post("/v1/wechat/cloud-login", context).await;
    assert_problem(unsigned, 401, "unauthorized").await;
}

/// Runs `clients/cloudfunction/login/index.js` under Node with a stand-in `wx-server-sdk`.
async fn the_shipped_cloud_function_logs_in(world: World) {
    if Command::new("node").arg("--version").output().is_err() {
        testkit::skip::<()>("cloud function", "node is not installed");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let function = root.join("clients/cloudfunction/login/index.js");
    let stubs = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let script = format!(
        "require({:?}).main({{}}, {{}}).then(r => console.log(JSON.stringify(r)), e => {{ console.error(e.code, e.message); process.exit(1) }})",
        function.display().to_string()
    );
    let base = world.url("");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("-e")
            .arg(script)
            .env("NODE_PATH", stubs)
            .env("IDENTITY_URL", base)
            .env("IDENTITY_CLOUD_SECRET", CLOUD_SECRET_A)
            .env("TEST_WX_APPID", APP_A)
            .env("TEST_WX_OPENID", "o_from_cloud_function")
            .output()
    })
    .await
    .expect("join")
    .expect("run node");
    assert!(
        output.status.success(),
        "cloud function failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("the function returns JSON");
    assert!(answer["access_token"].is_string(), "{answer}");
    assert_eq!(answer["user"]["openid"], "o_from_cloud_function");
}
