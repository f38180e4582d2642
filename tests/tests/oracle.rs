//! Issue 11 item 1: no padding oracle in `POST /v1/me/profile/authorize`. A caller pairing a
//! genuine `raw_data`/`signature` with ciphertext of their choosing learns nothing from the
//! answers, and gets few of them.

use std::collections::BTreeMap;

use api::usecases::encrypted_data::{MAX_FAILURES_PER_SESSION_KEY, MAX_FAILURES_PER_USER};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_tests::{
    answer_of, assert_problem, authorize_body, both_backends, Login, World, APP_A, APP_C,
};
use infra::wechat::user_data;
use infra::wechat::SessionKey;
use rand::RngCore;
use reqwest::Method;
use serde_json::{json, Value};

both_backends! {
    World:
    random_ciphertexts_get_one_answer_then_none,
    an_honest_client_with_a_few_failures_still_authorizes,
    a_refused_decrypted_unionid_answers_like_any_failure,
    a_decrypted_unionid_needs_the_callers_openid,
}

/// The genuine signed part with a random one-block ciphertext and iv.
fn forged(wx: &Value) -> Value {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut body = authorize_body(wx);
    body["iv"] = json!(STANDARD.encode(&bytes[..16]));
    body["encrypted_data"] = json!(STANDARD.encode(&bytes[16..]));
    body
}

async fn authorize(world: &World, base: &str, access: &str, body: &Value) -> reqwest::Response {
    world
        .call_at(base, Method::POST, "/v1/me/profile/authorize")
        .bearer(access)
        .json(body)
        .send()
        .await
}

/// Seals data as WeChat would for the current session of `login` in `APP_C`: a signed `{}`
/// as raw data, the data encrypted under the session key the simulator gave that login.
fn sealer(world: &World, login: &Login) -> impl Fn(Value) -> Value {
    let openid = login["user"]["openid"].as_str().expect("openid");
    let key = world
        .simulator
        .current_session_key(APP_C, openid)
        .expect("the simulator's key");
    let key = SessionKey::parse(&key).expect("session key");
    move |data: Value| {
        let raw_data = "{}";
        json!({
            "raw_data": raw_data,
            "signature": user_data::raw_data_signature(raw_data, &key),
            "encrypted_data": user_data::encrypt(&data, [9; 16], &key),
            "iv": STANDARD.encode([9u8; 16]),
        })
    }
}

/// The whole answer to random ciphertext under a genuine signature: what every refusal of
/// decrypted data must look like.
async fn bad_padding(world: &World, access: &str, sealed: impl Fn(Value) -> Value) -> String {
    let mut random = sealed(json!({}));
    random["encrypted_data"] = forged(&json!({}))["encrypted_data"].clone();
    let answer = answer_of(authorize(world, &world.app.base, access, &random).await).await;
    assert!(answer.starts_with("400 \"decrypt_failed\""), "{answer}");
    answer
}

async fn random_ciphertexts_get_one_answer_then_none(world: World) {
    // Two instances on one database: the cap is the database's, not an instance's.
    let second = world.spawn_instance(|_| {}).await;
    let access = world.login(APP_A, "oracle").await.access;
    let wx = world.get_user_profile(APP_A, "oracle", json!({})).await;

    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..600 {
        let base = if i % 2 == 0 {
            &world.app.base
        } else {
            &second.base
        };
        let answer = answer_of(authorize(&world, base, &access, &forged(&wx)).await).await;
        *answers.entry(answer).or_default() += 1;
    }
    let decrypt_answers: Vec<_> = answers
        .iter()
        .filter(|(answer, _)| answer.starts_with("400 \"decrypt_failed\""))
        .collect();
    assert_eq!(
        decrypt_answers.len(),
        1,
        "one decryption answer: {answers:#?}"
    );
    assert_eq!(
        *decrypt_answers[0].1, MAX_FAILURES_PER_SESSION_KEY as usize,
        "{answers:#?}"
    );
    // The rest: the key was retired at its cap, so every later attempt asks for a new login,
    // without looking at the ciphertext (and without counting against the user).
    let no_session = "400 \"invalid_request\" \"no WeChat session";
    for answer in answers.keys() {
        assert!(
            answer.starts_with("400 \"decrypt_failed\"") || answer.starts_with(no_session),
            "{answer}"
        );
    }

    // The key is gone, not merely refused: a genuine payload made under it asks for a new
    // login too.
    let response = authorize(&world, &world.app.base, &access, &authorize_body(&wx)).await;
    let answer = answer_of(response).await;
    assert!(answer.starts_with(no_session), "{answer}");

    // Each new login brings a new key and its own budget, but the user's budget caps them all:
    // spent, even a genuine payload under a fresh key is refused for the day.
    let keys = MAX_FAILURES_PER_USER / MAX_FAILURES_PER_SESSION_KEY;
    for _ in 1..keys {
        let access = world.login(APP_A, "oracle").await.access;
        let wx = world.get_user_profile(APP_A, "oracle", json!({})).await;
        for _ in 0..MAX_FAILURES_PER_SESSION_KEY {
            let answer = authorize(&world, &second.base, &access, &forged(&wx)).await;
            assert_problem(answer, 400, "decrypt_failed").await;
        }
    }
    let again = world.login(APP_A, "oracle").await;
    let fresh = world.get_user_profile(APP_A, "oracle", json!({})).await;
    let response = authorize(
        &world,
        &world.app.base,
        &again.access,
        &authorize_body(&fresh),
    )
    .await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "rate_limited").await;

    // Other users are not affected.
    let other = world.login(APP_A, "bystander").await.access;
    let theirs = world.get_user_profile(APP_A, "bystander", json!({})).await;
    let response = authorize(&world, &second.base, &other, &authorize_body(&theirs)).await;
    assert_eq!(response.status(), 204);
}

async fn an_honest_client_with_a_few_failures_still_authorizes(world: World) {
    let access = world.login(APP_A, "honest").await.access;
    let wx = world
        .get_user_profile(APP_A, "honest", json!({ "nickName": "Honest" }))
        .await;
    for _ in 0..MAX_FAILURES_PER_SESSION_KEY - 1 {
        let answer = authorize(&world, &world.app.base, &access, &forged(&wx)).await;
        assert_problem(answer, 400, "decrypt_failed").await;
    }
    let answer = authorize(&world, &world.app.base, &access, &authorize_body(&wx)).await;
    assert_eq!(answer.status(), 204);
    // Successes do not count: the same data may be shared again, many times.
    for _ in 0..MAX_FAILURES_PER_USER + 1 {
        let answer = authorize(&world, &world.app.base, &access, &authorize_body(&wx)).await;
        assert_eq!(answer.status(), 204);
    }
}

async fn a_refused_decrypted_unionid_answers_like_any_failure(world: World) {
    // Payloads from before 2021 carry openId and unionId. Data naming someone else is refused
    // exactly as a bad padding is. The payloads are sealed here under the real session key,
    // as only WeChat (or a working oracle) could.
    let victim = world.login(APP_A, "victim").await;
    let victim_unionid = victim["user"]["unionid"]
        .as_str()
        .expect("bound app")
        .to_owned();
    let attacker = world.login(APP_C, "attacker").await;
    let access = &attacker.access;
    let openid = attacker["user"]["openid"].as_str().expect("openid");
    let sealed = sealer(&world, &attacker);
    let watermark = json!({ "appid": APP_C, "timestamp": 1 });
    // Sealed the same way, the attacker's own data goes through: the refusals below are the
    // content's, not the sealing's.
    let own = sealed(json!({ "openId": openid, "nickName": "Mallory", "watermark": watermark }));
    let answer = authorize(&world, &world.app.base, access, &own).await;
    assert_eq!(answer.status(), 204);
    let bad_padding = bad_padding(&world, access, &sealed).await;
    for data in [
        json!({ "openId": "o-someone-else", "watermark": watermark }),
        json!({ "openId": openid, "unionId": "", "watermark": watermark }),
        json!({ "openId": openid, "unionId": victim_unionid, "watermark": watermark }),
        json!({ "nickName": "x", "watermark": { "appid": APP_A, "timestamp": 1 } }),
    ] {
        let answer =
            answer_of(authorize(&world, &world.app.base, access, &sealed(data.clone())).await)
                .await;
        assert_eq!(answer, bad_padding, "{data}");
    }
    // The victim's unionid did not move to the attacker.
    let me = world.get_json(access, "/v1/me").await;
    assert!(me["unionid"].is_null(), "{me}");
}

/// Without a padding oracle an attacker still steers the first plaintext block (through the
/// iv) and can drop leading blocks: what keeps a decrypted `unionId` honest is that it must
/// come with the caller's own `openId`. One without it is refused like any failure.
async fn a_decrypted_unionid_needs_the_callers_openid(world: World) {
    let me = world.login(APP_C, "unionid-without-openid").await;
    let access = &me.access;
    let sealed = sealer(&world, &me);
    let watermark = json!({ "appid": APP_C, "timestamp": 1 });
    let bad_padding = bad_padding(&world, access, &sealed).await;
    let data = json!({ "unionId": "un_unclaimed_without_openid", "watermark": watermark });
    let answer =
        answer_of(authorize(&world, &world.app.base, access, &sealed(data.clone())).await).await;
    assert_eq!(answer, bad_padding, "{data}");
    let mine = world.get_json(access, "/v1/me").await;
    assert!(mine["unionid"].is_null(), "{mine}");
}
