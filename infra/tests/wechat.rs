//! The real WeChat client against the simulator, over HTTP on a free port.

use std::time::Duration;

use domain::WeChatCode;
use infra::wechat::sim::Api;
use infra::wechat::{AppCredentials, Code2Session, WeChatClient, WeChatClientConfig, WeChatError};
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[path = "common/wechat_sim.rs"]
mod wechat_sim;

use testkit::assert_matches;
use wechat_sim::*;

/// The client's timeout here: short, for the tests of slow answers.
const TIMEOUT: Duration = Duration::from_millis(500);

fn test_config() -> WeChatClientConfig {
    client_config(TIMEOUT)
}

#[tokio::test]
async fn login_without_open_platform_has_no_unionid() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.login(APP_LONE, Some("alice")).await;
    let session = sim.exchange(APP_LONE, &code).await.expect("session");
    assert_eq!(session.openid.as_str().len(), 28);
    assert!(session.unionid.is_none());
    assert_eq!(session.session_key.to_bytes().len(), 16);
}

#[tokio::test]
async fn one_person_across_apps_of_one_open_platform() {
    let sim = Sim::start(TIMEOUT).await;
    let a1 = sim.sign_in(APP_A, Some("bob")).await;
    let a2 = sim.sign_in(APP_A, Some("bob")).await;
    let b = sim.sign_in(APP_B, Some("bob")).await;
    assert_eq!(a1.openid, a2.openid, "same person, same app: same openid");
    assert_ne!(a1.openid, b.openid, "openids are per app");
    assert!(a1.unionid.is_some());
    assert_eq!(a1.unionid, b.unionid, "same open platform: same unionid");

    let stranger = sim.sign_in(APP_A, None).await;
    assert_ne!(stranger.openid, a1.openid);
    assert_ne!(stranger.unionid, a1.unionid);
}

#[tokio::test]
async fn codes_are_single_use() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.login(APP_A, None).await;
    sim.exchange(APP_A, &code).await.expect("first use");
    let err = sim.exchange(APP_A, &code).await.unwrap_err();
    assert_matches!(err, WeChatError::InvalidCode { errcode: 40163 });
}

#[tokio::test]
async fn unknown_expired_and_foreign_codes_are_invalid() {
    let sim = Sim::start(TIMEOUT).await;
    let unknown = WeChatCode::parse("081nope").expect("code");
    let err = sim.exchange(APP_A, &unknown).await.unwrap_err();
    assert_matches!(err, WeChatError::InvalidCode { errcode: 40029 });

    let foreign = sim.login(APP_B, None).await;
    let err = sim.exchange(APP_A, &foreign).await.unwrap_err();
    assert_matches!(err, WeChatError::InvalidCode { errcode: 40029 });

    let old = sim.login(APP_A, None).await;
    let response = sim.post("/sim/clock", json!({"advance_secs": 301})).await;
    assert_eq!(response.status(), 204);
    let err = sim.exchange(APP_A, &old).await.unwrap_err();
    assert_matches!(err, WeChatError::InvalidCode { errcode: 40029 });

    // A code issued after the jump lives its own 5 minutes.
    let fresh = sim.login(APP_A, None).await;
    sim.sim
        .advance_clock(Duration::from_secs(299))
        .expect("advance");
    sim.exchange(APP_A, &fresh).await.expect("still valid");
}

#[tokio::test]
async fn refusals_map_to_errors_without_consuming_the_code() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.login(APP_A, None).await;
    for (errcode, check) in [
        (
            40226,
            (|e| matches!(e, WeChatError::HighRisk)) as fn(&WeChatError) -> bool,
        ),
        (45011, |e| matches!(e, WeChatError::RateLimited)),
        (40013, |e| {
            matches!(e, WeChatError::Misconfigured { errcode: 40013 })
        }),
        (48001, |e| {
            matches!(e, WeChatError::Rejected { errcode: 48001, .. })
        }),
    ] {
        sim.fault(json!({"api": "jscode2session", "errcode": errcode}))
            .await;
        let err = sim.exchange(APP_A, &code).await.unwrap_err();
        assert!(check(&err), "{errcode}: {err:?}");
    }
    sim.exchange(APP_A, &code).await.expect("code still unused");
    assert_eq!(sim.sim.calls(Api::Jscode2Session), 5);
}

#[tokio::test]
async fn busy_is_retried_up_to_max_attempts() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.login(APP_A, None).await;
    sim.fault(json!({"api": "jscode2session", "errcode": -1, "times": 0}))
        .await;
    let err = sim.exchange(APP_A, &code).await.unwrap_err();
    assert_matches!(err, WeChatError::Unavailable(_));
    assert_eq!(sim.sim.calls(Api::Jscode2Session), 3);

    sim.clear_faults().await;
    sim.fault(json!({"api": "jscode2session", "errcode": -1}))
        .await;
    sim.exchange(APP_A, &code)
        .await
        .expect("retried once, then fine");
    assert_eq!(sim.sim.calls(Api::Jscode2Session), 5);
}

#[tokio::test]
async fn bad_credentials_are_a_configuration_error() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.login(APP_A, None).await;
    let wrong = AppCredentials {
        appid: appid(APP_A),
        secret: "not-the-secret".to_owned().into(),
    };
    let err = sim.client.code_to_session(&wrong, &code).await.unwrap_err();
    assert_matches!(err, WeChatError::Misconfigured { errcode: 40125 });
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));

    let err = sim.exchange(UNKNOWN_APP, &code).await.unwrap_err();
    assert_matches!(err, WeChatError::Misconfigured { errcode: 40013 });
}

#[tokio::test]
async fn slow_answers_time_out_without_retry() {
    let sim = Sim::start(TIMEOUT).await;
    let code = sim.login(APP_A, None).await;
    sim.fault(json!({"api": "jscode2session", "latency_ms": 1500}))
        .await;
    let err = sim.exchange(APP_A, &code).await.unwrap_err();
    assert_matches!(err, WeChatError::Unavailable(_));
    assert_eq!(
        sim.sim.calls(Api::Jscode2Session),
        1,
        "a timeout may have consumed the code"
    );
}

#[tokio::test]
async fn unreachable_wechat_is_unavailable_and_the_secret_stays_out_of_errors() {
    // A port that was free a moment ago: connections are refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let client = WeChatClient::new(&base, test_config()).expect("client");
    let code = WeChatCode::parse("secret-code").expect("code");
    let started = std::time::Instant::now();
    let err = client
        .code_to_session(&creds(APP_A), &code)
        .await
        .unwrap_err();
    // Refused connections never reached WeChat: retried after 5 ms, then 10 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(15),
        "not retried"
    );
    assert_matches!(err, WeChatError::Unavailable(_));
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("secret-of") && !shown.contains("secret-code"),
        "{shown}"
    );
}

#[tokio::test]
async fn codes_with_plus_slash_and_equals_round_trip() {
    let sim = Sim::start(TIMEOUT).await;
    for _ in 0..200 {
        let code = sim.login(APP_A, None).await;
        let raw = code.as_str();
        if raw.contains('+') && raw.contains('/') && raw.contains('=') {
            sim.exchange(APP_A, &code).await.expect("encoded intact");
            return;
        }
    }
    panic!("the simulator never issued a code with '+', '/' and '='");
}

#[tokio::test]
async fn each_login_replaces_the_session_key() {
    let sim = Sim::start(TIMEOUT).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        let code = sim.login(APP_A, Some("carol")).await;
        let session = sim.exchange(APP_A, &code).await.expect("session");
        let current = sim.sim.current_session_key(APP_A, session.openid.as_str());
        assert_eq!(current.as_deref(), Some(session.session_key.expose()));
        keys.push(session.session_key.expose().to_owned());
    }
    keys.dedup();
    assert_eq!(keys.len(), 3, "a new session_key at each wx.login");
}

#[tokio::test]
async fn debug_output_hides_the_session_key() {
    let sim = Sim::start(TIMEOUT).await;
    let session = sim.sign_in(APP_A, None).await;
    let shown = format!("{session:?}");
    assert!(!shown.contains(session.session_key.expose()), "{shown}");
    assert!(shown.contains("SessionKey(<redacted>)"));
}

/// What `code_to_session` makes of a WeChat that answers `body` to every `jscode2session`.
async fn exchange_answered_by(body: String) -> Result<Code2Session, WeChatError> {
    let router = axum::Router::new().route(
        "/sns/jscode2session",
        axum::routing::get(move || async move { body }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = WeChatClient::new(&base, test_config()).expect("client");
    let code = WeChatCode::parse("any").expect("code");
    client.code_to_session(&creds(APP_A), &code).await
}

#[tokio::test]
async fn malformed_answers_are_unavailable() {
    for body in [
        r#"{"openid": "not an id!", "session_key": "HyVFkGl5F5OQWJZZaNzBBg=="}"#,
        r#"{"openid": "oAAAAAAAAAAAAAAAAAAAAAAAAAAA", "session_key": "short"}"#,
        r#"{"openid": "oAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
        "<html>busy</html>",
    ] {
        let err = exchange_answered_by(body.to_owned()).await.unwrap_err();
        assert!(
            matches!(&err, WeChatError::Unavailable(why) if why == "malformed response"),
            "{body}: {err:?}"
        );
    }
}

#[tokio::test]
async fn an_answer_past_the_size_bound_is_unavailable_not_read_whole() {
    // A well-formed answer but for its size: the bound, not the parser, refuses it.
    let padding = "x".repeat(100 * 1024);
    let body = format!(
        r#"{{"openid": "oAAAAAAAAAAAAAAAAAAAAAAAAAAA", "session_key": "HyVFkGl5F5OQWJZZaNzBBg==", "pad": "{padding}"}}"#
    );
    let err = exchange_answered_by(body).await.unwrap_err();
    assert!(
        matches!(&err, WeChatError::Unavailable(why) if why == "malformed response"),
        "{err:?}"
    );
}

#[test]
fn base_url_must_be_http() {
    for bad in [
        "",
        "not a url",
        "ftp://example.com",
        "http://example.com/?a=1",
    ] {
        assert!(
            WeChatClient::new(bad, WeChatClientConfig::default()).is_err(),
            "{bad:?}"
        );
    }
    assert!(WeChatClient::new("https://api.weixin.qq.com", WeChatClientConfig::default()).is_ok());
}

#[tokio::test]
async fn sim_endpoints_validate_their_input() {
    let sim = Sim::start(TIMEOUT).await;
    let health = sim
        .http
        .get(format!("{}/sim/health", sim.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    for (path, body) in [
        ("/sim/wx.login", json!({"appid": "nope"})),
        ("/sim/wx.login", json!({"appid": UNKNOWN_APP})),
        ("/sim/wx.login", json!({"appid": APP_A, "user": ""})),
        ("/sim/wx.login", json!([])),
        ("/sim/faults", json!({"api": "nope", "errcode": -1})),
        ("/sim/faults", json!({"api": "jscode2session"})),
        (
            "/sim/faults",
            json!({"api": "jscode2session", "errcode": 0}),
        ),
        ("/sim/clock", json!({"advance_secs": u64::MAX})),
        ("/sim/clock", json!({"advance_secs": -1})),
    ] {
        let response = sim.post(path, body.clone()).await;
        assert_eq!(response.status(), 400, "{path} {body}");
        let answer: Value = response.json().await.expect("json error");
        assert!(answer["error"].is_string(), "{answer}");
    }
}

/// A burst of calls opens a connection per call in flight. Once it is over the client keeps a
/// bounded number of them for reuse and closes the rest, instead of holding every one (and its
/// buffers) until it has idled for minutes.
#[tokio::test]
async fn a_burst_leaves_a_bounded_number_of_connections_open() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BURST: usize = 150;
    const KEPT_AT_MOST: usize = infra::wechat::IDLE_CONNECTIONS;
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/", listener.local_addr().expect("address"));
    let (counted, peak) = (open.clone(), most.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let now = counted.fetch_add(1, SeqCst) + 1;
            peak.fetch_max(now, SeqCst);
            let open = counted.clone();
            tokio::spawn(async move {
                // One keep-alive connection: each request answered after a pause, so that the
                // burst's calls overlap; ends when the client closes it. No pipelining (hyper's
                // client does not pipeline): what follows a request's head is dropped.
                let body = r#"{"openid": "oAAAAAAAAAAAAAAAAAAAAAAAAAAA", "session_key": "HyVFkGl5F5OQWJZZaNzBBg=="}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    request.extend_from_slice(&buf[..n]);
                    if request.windows(4).any(|w| w == b"\r\n\r\n") {
                        request.clear();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                }
                open.fetch_sub(1, SeqCst);
            });
        }
    });
    // Generous: 150 connections opened at once in a debug build on a busy machine.
    let client = WeChatClient::new(&base, client_config(Duration::from_secs(10))).expect("client");
    let code = WeChatCode::parse("any").expect("code");
    let app = creds(APP_A);
    let calls = (0..BURST).map(|_| client.code_to_session(&app, &code));
    for result in futures::future::join_all(calls).await {
        result.expect("session");
    }
    assert!(
        most.load(SeqCst) > KEPT_AT_MOST,
        "the burst did not need more connections than are kept: {most:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open.load(SeqCst) > KEPT_AT_MOST && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        open.load(SeqCst) <= KEPT_AT_MOST,
        "{open:?} connections still open after a burst of {BURST}"
    );
}
