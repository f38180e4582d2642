//! The APIs that need the app's access token (phone number, checkSessionKey), the token cache,
//! and the phone's side of them (phone button, getUserProfile): the real client against the
//! simulator over HTTP on a free port.

use std::time::Duration;

use domain::OpenId;
use domain::WeChatCode;
use infra::wechat::sim::{Api, Simulator};
use infra::wechat::user_data::{self, UserDataError};
use infra::wechat::{AppCredentials, PhoneInfo, SessionKey, WeChatClient, WeChatError};
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[path = "common/wechat_sim.rs"]
mod wechat_sim;

use testkit::assert_matches;
use wechat_sim::*;

const TOKEN_TTL: Duration = Duration::from_secs(7200);

/// The client's timeout here: the simulator's answers come slowly under load.
const TIMEOUT: Duration = Duration::from_millis(2000);

/// What WeChat (the simulator) answers `request`, as JSON.
async fn answer_of(request: reqwest::RequestBuilder) -> Value {
    request
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json")
}

fn assert_invalid_code(result: Result<PhoneInfo, WeChatError>) {
    let err = result.expect_err("the code should be refused");
    assert_matches!(err, WeChatError::InvalidCode { errcode: 40029 });
}

/// Exchanging `code` on APP_A gives the number (else fails with `why`).
async fn accepted(sim: &Sim, code: &WeChatCode, why: &str) -> PhoneInfo {
    sim.phone_number(APP_A, code, None).await.expect(why)
}

/// Phone codes of `user-0` to `user-{n-1}` on APP_A, all exchanged at once: the answers, in
/// that order.
async fn phone_numbers_at_once(sim: &Sim, n: usize) -> Vec<Result<PhoneInfo, WeChatError>> {
    let mut codes = Vec::new();
    for i in 0..n {
        codes.push(sim.phone_code(APP_A, &format!("user-{i}")).await);
    }
    let calls = codes.iter().map(|code| sim.phone_number(APP_A, code, None));
    futures::future::join_all(calls).await
}

/// A fresh phone code of `user`'s on `app`, exchanged for the number.
async fn fresh_phone_number(sim: &Sim, app: &str, user: &str) -> PhoneInfo {
    let code = sim.phone_code(app, user).await;
    sim.phone_number(app, &code, None).await.expect("phone")
}

/// With `fault` injected into getuserphonenumber, exchanging `code` on APP_A fails: the error.
async fn refused_under(sim: &Sim, mut fault: Value, code: &WeChatCode) -> WeChatError {
    fault["api"] = json!("getuserphonenumber");
    sim.fault(fault).await;
    sim.phone_number(APP_A, code, None)
        .await
        .expect_err("refused")
}

/// checkSessionKey of `openid` and `session_key` on `app`: whether WeChat holds that key.
async fn key_is_current(sim: &Sim, app: &str, openid: &OpenId, session_key: &SessionKey) -> bool {
    sim.client
        .check_session(&creds(app), openid, session_key)
        .await
        .expect("check")
}

// ---------------------------------------------------------------- phone number

#[tokio::test]
async fn phone_number_of_the_person_behind_the_code() {
    let sim = Sim::start(TIMEOUT).await;
    let session = sim.sign_in(APP_A, Some("alice")).await;
    let code = sim.phone_code(APP_A, "alice").await;
    let info = sim
        .phone_number(APP_A, &code, Some(&session.openid))
        .await
        .expect("phone number");
    let expected = Simulator::phone_number_of("alice");
    assert_eq!(info.phone_number, expected);
    assert_eq!(info.pure_phone_number, expected);
    assert_eq!(info.country_code, "86");

    let shown = format!("{info:?}");
    assert!(!shown.contains(&expected), "{shown}");
    assert!(shown.contains("86"), "{shown}");

    // Without openid too, and the same number in another app.
    let code = sim.phone_code(APP_LONE, "alice").await;
    let info = sim
        .phone_number(APP_LONE, &code, None)
        .await
        .expect("phone");
    assert_eq!(info.phone_number, expected);
    assert_eq!(sim.calls(Api::StableToken), 2, "one token per app");
}

#[tokio::test]
async fn phone_codes_are_single_use() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.phone_code(APP_A, "alice").await;
    accepted(&sim, &code, "first use").await;
    assert_invalid_code(sim.phone_number(APP_A, &code, None).await);
}

#[tokio::test]
async fn phone_codes_expire_after_five_minutes() {
    let sim = Sim::start(TIMEOUT).await;
    let old = sim.phone_code(APP_A, "alice").await;
    let fresh_enough = sim.phone_code(APP_A, "alice").await;
    sim.sim
        .advance_clock(Duration::from_secs(299))
        .expect("advance");
    accepted(&sim, &fresh_enough, "299 s old").await;
    sim.sim
        .advance_clock(Duration::from_secs(2))
        .expect("advance");
    assert_invalid_code(sim.phone_number(APP_A, &old, None).await);
}

#[tokio::test]
async fn phone_codes_of_other_apps_people_or_unknown_are_invalid() {
    let sim = Sim::start(TIMEOUT).await;
    let bob = sim.sign_in(APP_A, Some("bob")).await;
    let code = sim.phone_code(APP_A, "alice").await;
    assert_invalid_code(sim.phone_number(APP_A, &code, Some(&bob.openid)).await);

    let foreign = sim.phone_code(APP_B, "alice").await;
    assert_invalid_code(sim.phone_number(APP_A, &foreign, None).await);

    // A wx.login code is not a phone code.
    let body = sim
        .post_ok("/sim/wx.login", json!({"appid": APP_A, "user": "alice"}))
        .await;
    let login_code = WeChatCode::parse(body["code"].as_str().expect("code")).expect("code");
    assert_invalid_code(sim.phone_number(APP_A, &login_code, None).await);

    // Refused codes are not used up: the right caller still gets the number.
    accepted(&sim, &code, "still valid").await;
}

#[tokio::test]
async fn phone_refusals_map_to_errors_without_consuming_the_code() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.phone_code(APP_A, "alice").await;
    let err = refused_under(&sim, json!({"errcode": 45011}), &code).await;
    assert_matches!(err, WeChatError::RateLimited);
    let err = refused_under(&sim, json!({"errcode": 40013}), &code).await;
    assert_matches!(err, WeChatError::Misconfigured { errcode: 40013 });
    // -1 is retried.
    sim.fault(json!({"api": "getuserphonenumber", "errcode": -1}))
        .await;
    accepted(&sim, &code, "retried after -1").await;
    assert_eq!(sim.calls(Api::GetUserPhoneNumber), 4);

    let code = sim.phone_code(APP_A, "alice").await;
    let err = refused_under(&sim, json!({"errcode": -1, "times": 0}), &code).await;
    assert_matches!(err, WeChatError::Unavailable(_));
    assert_eq!(sim.calls(Api::GetUserPhoneNumber), 7, "3 attempts");
}

#[tokio::test]
async fn phone_number_answers_for_another_app_are_refused() {
    let router = axum::Router::new()
        .route(
            "/cgi-bin/stable_token",
            axum::routing::post(|| async { r#"{"access_token":"T","expires_in":7200}"# }),
        )
        .route(
            "/wxa/business/getuserphonenumber",
            axum::routing::post(|| async {
                r#"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13900000000","purePhoneNumber":"13900000000","countryCode":"86","watermark":{"timestamp":1,"appid":"wx00000000000000b2"}}}"#
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = WeChatClient::new(&base, client_config(TIMEOUT)).expect("client");
    let code = WeChatCode::parse("any").expect("code");
    let err = client
        .get_user_phone_number(&creds(APP_A), &code, None)
        .await
        .unwrap_err();
    assert_matches!(err, WeChatError::WatermarkMismatch);
    assert!(!format!("{err} {err:?}").contains("13900000000"));
}

// ---------------------------------------------------------------- access token

#[tokio::test]
async fn concurrent_calls_on_a_cold_cache_fetch_one_token() {
    let sim = Sim::start(TIMEOUT).await;
    // A slow stable_token makes every caller find the cache cold.
    sim.fault(json!({"api": "stable_token", "latency_ms": 200}))
        .await;
    let results = phone_numbers_at_once(&sim, 8).await;
    for (i, result) in results.into_iter().enumerate() {
        let info = result.expect("phone number");
        assert_eq!(
            info.phone_number,
            Simulator::phone_number_of(&format!("user-{i}"))
        );
    }
    assert_eq!(sim.calls(Api::StableToken), 1);
    assert_eq!(sim.calls(Api::GetUserPhoneNumber), 8);
}

#[tokio::test]
async fn the_token_is_cached_across_calls_and_apis() {
    let sim = Sim::start(TIMEOUT).await;
    let session = sim.sign_in(APP_A, Some("alice")).await;
    for _ in 0..3 {
        fresh_phone_number(&sim, APP_A, "alice").await;
    }
    assert!(key_is_current(&sim, APP_A, &session.openid, &session.session_key).await);
    assert_eq!(sim.calls(Api::StableToken), 1);

    // Clones share the cache.
    let clone = sim.client.clone();
    let code = sim.phone_code(APP_A, "alice").await;
    clone
        .get_user_phone_number(&creds(APP_A), &code, None)
        .await
        .expect("phone");
    assert_eq!(sim.calls(Api::StableToken), 1);
}

#[tokio::test]
async fn the_token_is_refreshed_ahead_of_expiry() {
    let sim = Sim::start(TIMEOUT).await;
    fresh_phone_number(&sim, APP_A, "alice").await;
    assert_eq!(sim.calls(Api::StableToken), 1);

    // 6 minutes before expiry: still cached.
    sim.advance_both(TOKEN_TTL - Duration::from_secs(360));
    fresh_phone_number(&sim, APP_A, "alice").await;
    assert_eq!(sim.calls(Api::StableToken), 1);

    // 4 minutes before expiry: fetched again (WeChat hands back the same, still valid, token).
    sim.advance_both(Duration::from_secs(120));
    fresh_phone_number(&sim, APP_A, "alice").await;
    assert_eq!(sim.calls(Api::StableToken), 2);
    assert_eq!(sim.calls(Api::GetUserPhoneNumber), 3, "no refusals");

    // Past expiry: a new token, no refusal either.
    sim.advance_both(Duration::from_secs(241));
    fresh_phone_number(&sim, APP_A, "alice").await;
    assert_eq!(sim.calls(Api::StableToken), 3);
    assert_eq!(sim.calls(Api::GetUserPhoneNumber), 4, "no refusals");
}

#[tokio::test]
async fn a_token_expired_at_wechat_is_replaced_and_the_call_retried() {
    let sim = Sim::start(TIMEOUT).await;
    fresh_phone_number(&sim, APP_A, "alice").await;

    // WeChat's clock runs ahead of ours: it answers 42001 to the token we still trust.
    sim.sim
        .advance_clock(TOKEN_TTL + Duration::from_secs(1))
        .expect("advance");
    let code = sim.phone_code(APP_A, "alice").await;
    accepted(&sim, &code, "retried with a new token").await;
    assert_eq!(sim.calls(Api::StableToken), 2);
    assert_eq!(sim.calls(Api::GetUserPhoneNumber), 3);
}

#[tokio::test]
async fn an_injected_token_refusal_is_retried_once_with_a_new_token() {
    let sim = Sim::start(TIMEOUT).await;
    let mut expected_token_calls = 0;
    let mut expected_phone_calls = 0;
    for errcode in [42001, 40001, 40014] {
        let code = sim.phone_code(APP_A, "alice").await;
        sim.fault(json!({"api": "getuserphonenumber", "errcode": errcode}))
            .await;
        sim.phone_number(APP_A, &code, None)
            .await
            .unwrap_or_else(|err| panic!("{errcode}: {err:?}"));
        // First call of the loop: cold fetch + forced refresh; later ones: forced refresh.
        expected_token_calls += if errcode == 42001 { 2 } else { 1 };
        expected_phone_calls += 2;
        assert_eq!(
            sim.calls(Api::StableToken),
            expected_token_calls,
            "{errcode}"
        );
        assert_eq!(
            sim.calls(Api::GetUserPhoneNumber),
            expected_phone_calls,
            "{errcode}"
        );
    }
}

#[tokio::test]
async fn a_persistent_token_refusal_is_an_error_not_a_loop() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.phone_code(APP_A, "alice").await;
    let err = refused_under(&sim, json!({"errcode": 40001, "times": 0}), &code).await;
    assert_matches!(err, WeChatError::AccessTokenRejected { errcode: 40001 });
    assert_eq!(sim.calls(Api::GetUserPhoneNumber), 2);
    assert_eq!(sim.calls(Api::StableToken), 2);

    sim.clear_faults().await;
    accepted(&sim, &code, "the code was never used").await;
}

#[tokio::test]
async fn concurrent_refusals_force_one_refresh() {
    let sim = Sim::start(TIMEOUT).await;
    let warm = sim.phone_code(APP_A, "alice").await;
    accepted(&sim, &warm, "warm up").await;
    sim.fault(json!({"api": "getuserphonenumber", "errcode": 42001, "times": 4}))
        .await;
    sim.fault(json!({"api": "stable_token", "latency_ms": 100}))
        .await;
    for result in phone_numbers_at_once(&sim, 4).await {
        result.expect("phone number");
    }
    assert_eq!(sim.calls(Api::StableToken), 2, "one forced refresh");
}

#[tokio::test]
async fn bad_credentials_are_a_configuration_error() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.phone_code(APP_A, "alice").await;
    let wrong = AppCredentials {
        appid: appid(APP_A),
        secret: "not-the-secret".to_owned().into(),
    };
    let err = sim
        .client
        .get_user_phone_number(&wrong, &code, None)
        .await
        .unwrap_err();
    assert_matches!(err, WeChatError::Misconfigured { errcode: 40125 });
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));
    let err = sim
        .phone_number(UNKNOWN_APP, &code, None)
        .await
        .unwrap_err();
    assert_matches!(err, WeChatError::Misconfigured { errcode: 40013 });
    assert_eq!(sim.calls(Api::GetUserPhoneNumber), 0);
}

#[tokio::test]
async fn stable_token_shares_one_token_until_forced() {
    let sim = Sim::start(TIMEOUT).await;
    let request = |force: bool| {
        json!({
            "grant_type": "client_credential",
            "appid": APP_A,
            "secret": format!("secret-of-{APP_A}"),
            "force_refresh": force,
        })
    };
    let first = sim.post_ok("/cgi-bin/stable_token", request(false)).await;
    let again = sim.post_ok("/cgi-bin/stable_token", request(false)).await;
    let token = first["access_token"].as_str().expect("token").to_owned();
    assert_eq!(again["access_token"], first["access_token"]);
    assert_eq!(first["expires_in"], 7200);
    let other_app = sim
        .post_ok(
            "/cgi-bin/stable_token",
            json!({"grant_type": "client_credential", "appid": APP_B, "secret": format!("secret-of-{APP_B}")}),
        )
        .await;
    assert_ne!(other_app["access_token"], first["access_token"]);

    let forced = sim.post_ok("/cgi-bin/stable_token", request(true)).await;
    assert_ne!(forced["access_token"], first["access_token"]);
    // The replaced token is refused at once.
    let check = |token: String| {
        sim.http
            .get(format!("{}/wxa/checksession", sim.base))
            .query(&[
                ("access_token", token.as_str()),
                ("openid", "oNobody"),
                ("signature", "00"),
                ("sig_method", "hmac_sha256"),
            ])
    };
    let answer = answer_of(check(token)).await;
    assert_eq!(answer["errcode"], 40001, "{answer}");
    let answer = answer_of(check(
        forced["access_token"].as_str().expect("token").to_owned(),
    ))
    .await;
    assert_eq!(answer["errcode"], 87009, "{answer}");

    for (body, errcode) in [
        (
            json!({"grant_type": "client_credential", "appid": APP_A, "secret": "x"}),
            40125,
        ),
        (
            json!({"grant_type": "client_credential", "appid": UNKNOWN_APP, "secret": "x"}),
            40013,
        ),
        (
            json!({"grant_type": "password", "appid": APP_A, "secret": format!("secret-of-{APP_A}")}),
            40002,
        ),
        (json!([]), 47001),
    ] {
        let answer = sim.post_ok("/cgi-bin/stable_token", body.clone()).await;
        assert_eq!(answer["errcode"], errcode, "{body}");
    }
}

// ---------------------------------------------------------------- checkSessionKey

#[tokio::test]
async fn check_session_follows_the_current_session_key() {
    let sim = Sim::start(TIMEOUT).await;
    let first = sim.sign_in(APP_A, Some("carol")).await;
    assert!(key_is_current(&sim, APP_A, &first.openid, &first.session_key).await);

    let second = sim.sign_in(APP_A, Some("carol")).await;
    assert_eq!(second.openid, first.openid);
    assert!(!key_is_current(&sim, APP_A, &first.openid, &first.session_key).await);
    assert!(key_is_current(&sim, APP_A, &second.openid, &second.session_key).await);

    // Another person's openid, another app's key.
    let dave = sim.sign_in(APP_A, Some("dave")).await;
    assert!(!key_is_current(&sim, APP_A, &dave.openid, &second.session_key).await);
    let lone = sim.sign_in(APP_LONE, Some("carol")).await;
    assert!(!key_is_current(&sim, APP_LONE, &lone.openid, &second.session_key).await);
}

#[tokio::test]
async fn check_session_replaces_a_refused_token() {
    let sim = Sim::start(TIMEOUT).await;
    let session = sim.sign_in(APP_A, Some("carol")).await;
    sim.fault(json!({"api": "checksession", "errcode": 42001}))
        .await;
    assert!(key_is_current(&sim, APP_A, &session.openid, &session.session_key).await);
    assert_eq!(sim.calls(Api::CheckSession), 2);
    assert_eq!(sim.calls(Api::StableToken), 2);
}

// ---------------------------------------------------------------- getUserProfile

async fn user_profile(sim: &Sim, app: &str, user: &str, profile: Option<Value>) -> Value {
    let mut body = json!({"appid": app, "user": user});
    if let Some(profile) = profile {
        body["profile"] = profile;
    }
    sim.post_ok("/sim/getUserProfile", body).await
}

fn field<'a>(payload: &'a Value, name: &str) -> &'a str {
    payload[name].as_str().expect(name)
}

/// The payload's `encryptedData`, opened with `session_key` for `app`.
fn open(payload: &Value, session_key: &SessionKey, app: &str) -> Result<Value, UserDataError> {
    user_data::decrypt(
        field(payload, "encryptedData"),
        field(payload, "iv"),
        session_key,
        app,
    )
}

#[tokio::test]
async fn user_profile_payload_is_sealed_with_the_current_session_key() {
    let sim = Sim::start(TIMEOUT).await;
    let session = sim.sign_in(APP_A, Some("erin")).await;
    let payload = user_profile(
        &sim,
        APP_A,
        "erin",
        Some(json!({"nickName": "Erin", "gender": 2})),
    )
    .await;
    let raw_data = field(&payload, "rawData");
    user_data::verify_raw_data(raw_data, field(&payload, "signature"), &session.session_key)
        .expect("signature");
    let raw: Value = serde_json::from_str(raw_data).expect("rawData is JSON");
    assert_eq!(raw["nickName"], "Erin");
    assert_eq!(raw["gender"], 2);
    assert_eq!(raw["city"], "Guangzhou");
    assert_eq!(payload["userInfo"], raw);

    let data = open(&payload, &session.session_key, APP_A).expect("decrypts");
    assert_eq!(data["nickName"], "Erin");
    assert_eq!(data["watermark"]["appid"], APP_A);
    assert!(data["watermark"]["timestamp"].is_u64());
    assert_eq!(data["openId"], session.openid.as_str());
    assert_eq!(
        data["unionId"],
        session.unionid.as_ref().expect("bound app").as_str()
    );

    // A new wx.login replaces the key: the old payload no longer opens under the new one.
    let newer = sim.sign_in(APP_A, Some("erin")).await;
    let err =
        user_data::verify_raw_data(raw_data, field(&payload, "signature"), &newer.session_key)
            .unwrap_err();
    assert_eq!(err, UserDataError::SignatureMismatch);
    match open(&payload, &newer.session_key, APP_A) {
        Err(err) => assert!(err.suggests_stale_session_key(), "{err:?}"),
        // The padding and JSON checks pass by chance about once in a few thousand tries.
        Ok(data) => assert_ne!(data["nickName"], "Erin"),
    }
    // A fresh payload opens under the new key.
    let fresh = user_profile(&sim, APP_A, "erin", None).await;
    open(&fresh, &newer.session_key, APP_A).expect("decrypts");
    assert_ne!(fresh["iv"], payload["iv"], "a random iv each time");
}

#[tokio::test]
async fn user_profile_defaults_match_wechats_example() {
    let sim = Sim::start(TIMEOUT).await;
    let session = sim.sign_in(APP_LONE, Some("frank")).await;
    let payload = user_profile(&sim, APP_LONE, "frank", None).await;
    assert_eq!(
        field(&payload, "rawData"),
        r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#
    );
    let data = open(&payload, &session.session_key, APP_LONE).expect("decrypts");
    assert!(
        data.get("unionId").is_none() && data.get("openId").is_none(),
        "{data}"
    );
    let err = open(&payload, &session.session_key, APP_A).unwrap_err();
    assert_eq!(err, UserDataError::Undecryptable);
}

// ---------------------------------------------------------------- simulator input

#[tokio::test]
async fn phone_side_endpoints_validate_their_input() {
    let sim = Sim::start(TIMEOUT).await;
    sim.sign_in(APP_A, Some("alice")).await;
    for (path, body) in [
        (
            "/sim/getUserProfile",
            json!({"appid": APP_A, "user": "never-logged-in"}),
        ),
        (
            "/sim/getUserProfile",
            json!({"appid": APP_B, "user": "alice"}),
        ),
        (
            "/sim/getUserProfile",
            json!({"appid": UNKNOWN_APP, "user": "alice"}),
        ),
        ("/sim/getUserProfile", json!({"appid": APP_A, "user": ""})),
        (
            "/sim/getUserProfile",
            json!({"appid": APP_A, "user": "alice", "profile": {"gender": 7}}),
        ),
        (
            "/sim/getUserProfile",
            json!({"appid": APP_A, "user": "alice", "profile": {"nick": "x"}}),
        ),
        ("/sim/getPhoneNumber", json!({"appid": APP_A})),
        (
            "/sim/getPhoneNumber",
            json!({"appid": UNKNOWN_APP, "user": "alice"}),
        ),
        (
            "/sim/getPhoneNumber",
            json!({"appid": "nope", "user": "alice"}),
        ),
    ] {
        let response = sim.post(path, body.clone()).await;
        assert_eq!(response.status(), 400, "{path} {body}");
        let answer: Value = response.json().await.expect("json error");
        assert!(answer["error"].is_string(), "{answer}");
    }
    for api in [
        "jscode2session",
        "stable_token",
        "getuserphonenumber",
        "checksession",
    ] {
        sim.fault(json!({"api": api, "errcode": -1})).await;
    }
    let response = sim
        .post("/sim/faults", json!({"api": "nope", "errcode": -1}))
        .await;
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.expect("json");
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("getuserphonenumber"),
        "{answer}"
    );
}

#[tokio::test]
async fn token_apis_refuse_missing_or_unknown_tokens() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.phone_code(APP_A, "alice").await;
    for (query, errcode) in [("", 41001), ("?access_token=nope", 40001)] {
        let request = sim
            .http
            .post(format!(
                "{}/wxa/business/getuserphonenumber{query}",
                sim.base
            ))
            .json(&json!({"code": code.as_str()}));
        let answer = answer_of(request).await;
        assert_eq!(answer["errcode"], errcode, "{query}: {answer}");
    }
    accepted(&sim, &code, "the code was never used").await;
}
