//! The simulator's content security: `msg_sec_check` over HTTP, and `media_check_async`
//! fetching an image from a local server and pushing its signed verdict to another.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use infra::wechat::sim::{Api, ContentUpdate, MediaCheckReport, PushOutcome, Suggest};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[path = "common/wechat_sim.rs"]
mod wechat_sim;

use wechat_sim::*;

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a verdict may take to arrive here: fetch, delay, retries, a loaded machine.
const PUSH_WAIT: Duration = Duration::from_secs(20);
const PUSH_TOKEN: &str = "pushToken42";
/// The simulator's cap on media checks not yet pushed.
const MAX_PENDING: usize = 1000;

/// A stable_token for `app`, over HTTP.
async fn access_token(sim: &Sim, app: &str) -> String {
    let body = json!({
        "grant_type": "client_credential", "appid": app, "secret": secret_of(app),
    });
    let answer: Value = sim
        .http
        .post(sim.url("/cgi-bin/stable_token"))
        .json(&body)
        .send()
        .await
        .expect("token answer")
        .json()
        .await
        .expect("token json");
    answer["access_token"].as_str().expect("a token").to_owned()
}

/// `POST {path}?access_token={token}` with `body`: WeChat's JSON answer.
async fn call(sim: &Sim, path: &str, token: &str, body: &Value) -> Value {
    let answer = call_raw(sim, path, token, body.to_string()).await;
    serde_json::from_str(&answer).expect("WeChat answers JSON")
}

/// `POST {path}?access_token={token}` with `body` as it is: the answer's text.
async fn call_raw(sim: &Sim, path: &str, token: &str, body: String) -> String {
    sim.http
        .post(sim.url(path))
        .query(&[("access_token", token)])
        .body(body)
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("text")
}

/// `user` logged in to `app`: their openid.
async fn openid_of(sim: &Sim, app: &str, user: &str) -> String {
    sim.sign_in(app, Some(user))
        .await
        .openid
        .as_str()
        .to_owned()
}

fn text_check(content: &str, openid: &str) -> Value {
    json!({ "content": content, "version": 2, "scene": 1, "openid": openid })
}

fn media_check(media_url: &str, openid: &str) -> Value {
    json!({ "media_url": media_url, "media_type": 2, "version": 2, "scene": 1, "openid": openid })
}

/// (suggest, label) of a msg_sec_check answer, after checking its shape.
fn verdict_of(answer: &Value) -> (String, i64) {
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert_eq!(answer["errmsg"], "ok");
    assert!(answer["trace_id"].as_str().is_some_and(|t| !t.is_empty()));
    let detail = answer["detail"].as_array().expect("detail");
    let strategies: Vec<_> = detail.iter().map(|d| d["strategy"].clone()).collect();
    assert_eq!(strategies, [json!("content_model"), json!("keyword")]);
    assert_eq!(detail[0]["prob"], 90);
    let result = &answer["result"];
    (
        result["suggest"].as_str().expect("suggest").to_owned(),
        result["label"].as_i64().expect("label"),
    )
}

/// One push the app received.
struct Pushed {
    query: HashMap<String, String>,
    event: Value,
}

/// The app's side: `GET /image/{bytes}` serves that many bytes (and counts), `POST /push`
/// records each push and answers the queued (status, body) answers, then `200 success`.
struct AppServer {
    base: String,
    fetches: Arc<AtomicUsize>,
    pushes: mpsc::UnboundedReceiver<Pushed>,
}

#[derive(Clone)]
struct AppState {
    fetches: Arc<AtomicUsize>,
    answers: Arc<Mutex<VecDeque<(StatusCode, &'static str)>>>,
    pushes: mpsc::UnboundedSender<Pushed>,
}

impl AppServer {
    async fn start(answers: &[(StatusCode, &'static str)]) -> Self {
        let (tx, pushes) = mpsc::unbounded_channel();
        let fetches = Arc::new(AtomicUsize::new(0));
        let state = AppState {
            fetches: Arc::clone(&fetches),
            answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
            pushes: tx,
        };
        let router = Router::new()
            .route("/image/{bytes}", get(serve_image))
            .route("/push", post(receive_push))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base,
            fetches,
            pushes,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn next_push(&mut self) -> Pushed {
        tokio::time::timeout(PUSH_WAIT, self.pushes.recv())
            .await
            .expect("a push in time")
            .expect("the app server runs")
    }
}

async fn serve_image(State(app): State<AppState>, Path(bytes): Path<usize>) -> Vec<u8> {
    app.fetches.fetch_add(1, Ordering::SeqCst);
    vec![0x89; bytes]
}

async fn receive_push(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> (StatusCode, &'static str) {
    let event = serde_json::from_str(&body).expect("the push is JSON");
    let _ = app.pushes.send(Pushed { query, event });
    let queued = app.answers.lock().expect("answers").pop_front();
    queued.unwrap_or((StatusCode::OK, "success"))
}

/// WeChat's push signature, computed here independently of the simulator.
fn expected_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = vec![token.to_owned(), timestamp.to_owned(), nonce.to_owned()];
    parts.sort();
    let mut sha = Sha1::new();
    for part in &parts {
        sha.update(part.as_bytes());
    }
    hex::encode(sha.finalize())
}

fn assert_signed(pushed: &Pushed, token: &str) {
    let q = &pushed.query;
    let (timestamp, nonce) = (&q["timestamp"], &q["nonce"]);
    assert!(
        timestamp.parse::<u64>().is_ok() && !nonce.is_empty(),
        "{q:?}"
    );
    assert_eq!(q["signature"], expected_signature(token, timestamp, nonce));
}

/// The report of media check `trace_id` once it has finished.
async fn report_of(sim: &Sim, trace_id: &str) -> MediaCheckReport {
    let deadline = Instant::now() + PUSH_WAIT;
    loop {
        let reports = sim.sim.media_check_reports();
        if let Some(report) = reports.into_iter().find(|r| r.trace_id == trace_id) {
            return report;
        }
        assert!(Instant::now() < deadline, "no report for {trace_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A simulator with alice logged in to APP_A, whose pushes go to `app`, 10 ms after the fetch.
async fn pushing_to(app: &AppServer) -> (Sim, String, String) {
    let sim = Sim::start(TIMEOUT).await;
    let openid = openid_of(&sim, APP_A, "alice").await;
    let token = access_token(&sim, APP_A).await;
    sim.sim
        .set_push_with_delay(
            &appid(APP_A),
            &app.url("/push"),
            PUSH_TOKEN,
            Duration::from_millis(10),
        )
        .expect("push target");
    (sim, openid, token)
}

/// Submits `media_url` for a check: the trace id.
async fn submit(sim: &Sim, token: &str, media_url: &str, openid: &str) -> String {
    let answer = call(
        sim,
        "/wxa/media_check_async",
        token,
        &media_check(media_url, openid),
    )
    .await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    answer["trace_id"].as_str().expect("trace id").to_owned()
}

#[tokio::test]
async fn msg_sec_check_passes_reviews_and_rejects_by_word() {
    let sim = Sim::start(TIMEOUT).await;
    let openid = openid_of(&sim, APP_A, "alice").await;
    let token = access_token(&sim, APP_A).await;
    let check = |content: &'static str| {
        let (sim, token, body) = (&sim, &token, text_check(content, &openid));
        async move { call(sim, "/wxa/msg_sec_check", token, &body).await }
    };

    assert_eq!(verdict_of(&check("Alice").await), ("pass".into(), 100));
    let risky = check("a RISKY name").await;
    assert_eq!(verdict_of(&risky), ("risky".into(), 21000));
    assert_eq!(risky["detail"][1]["keyword"], "risky");
    assert_eq!(verdict_of(&check("违规昵称").await).0, "risky");
    let review = check("please review me").await;
    assert_eq!(verdict_of(&review), ("review".into(), 21000));
    assert_eq!(review["detail"][1]["keyword"], "review");

    let settings = sim
        .post_ok("/sim/content", json!({ "risky_words": ["spam"] }))
        .await;
    assert_eq!(settings["risky_words"], json!(["spam"]));
    assert_eq!(settings["review_words"], json!(["review"]));
    assert_eq!(verdict_of(&check("a risky name").await).0, "pass");
    assert_eq!(verdict_of(&check("Spam King").await).0, "risky");
    let shown = sim.get_ok("/sim/content").await;
    assert_eq!(shown, settings);
    assert_eq!(sim.calls(Api::MsgSecCheck), 6);
}

#[tokio::test]
async fn msg_sec_check_refuses_like_wechat() {
    let sim = Sim::start(TIMEOUT).await;
    let alice = openid_of(&sim, APP_A, "alice").await;
    let bob_elsewhere = openid_of(&sim, APP_B, "bob").await;
    let token = access_token(&sim, APP_A).await;
    let errcode = |token: String, body: Value| {
        let sim = &sim;
        async move { call(sim, "/wxa/msg_sec_check", &token, &body).await["errcode"].clone() }
    };

    let fine = text_check("Alice", &alice);
    assert_eq!(errcode("not-a-token".into(), fine.clone()).await, 40001);
    assert_eq!(errcode(String::new(), fine.clone()).await, 41001);
    let mut v1 = fine.clone();
    v1["version"] = json!(1);
    assert_eq!(errcode(token.clone(), v1).await, 40097);
    for scene in [json!(0), json!(5), Value::Null] {
        let mut body = fine.clone();
        body["scene"] = scene;
        assert_eq!(errcode(token.clone(), body).await, 40129);
    }
    // 2,500 characters, not bytes.
    let longest = "中".repeat(2500);
    let at_limit = text_check(&longest, &alice);
    assert_eq!(errcode(token.clone(), at_limit).await, 0);
    let too_long = text_check(&format!("{longest}a"), &alice);
    assert_eq!(errcode(token.clone(), too_long).await, 40097);
    // Bob logged in to APP_B, never to APP_A.
    let stranger = text_check("Bob", &bob_elsewhere);
    assert_eq!(errcode(token.clone(), stranger).await, 61010);
    let garbage = text_check("Bob", "not an openid!");
    assert_eq!(errcode(token.clone(), garbage).await, 40003);
    let no_openid = json!({ "content": "x", "version": 2, "scene": 1 });
    assert_eq!(errcode(token.clone(), no_openid).await, 40003);
    let not_json = call_raw(&sim, "/wxa/msg_sec_check", &token, "{".into()).await;
    assert!(not_json.contains("47001"), "{not_json}");
}

#[tokio::test]
async fn media_check_fetches_the_image_and_pushes_a_signed_verdict() {
    let mut app = AppServer::start(&[]).await;
    let (sim, openid, token) = pushing_to(&app).await;

    let trace_id = submit(&sim, &token, &app.url("/image/2048"), &openid).await;
    let pushed = app.next_push().await;
    assert_signed(&pushed, PUSH_TOKEN);
    let event = &pushed.event;
    assert!(event["ToUserName"]
        .as_str()
        .is_some_and(|t| t.starts_with("gh_")));
    assert_eq!(event["FromUserName"], openid.as_str());
    assert!(event["CreateTime"].as_u64().is_some());
    assert_eq!(event["MsgType"], "event");
    assert_eq!(event["Event"], "wxa_media_check");
    assert_eq!(event["appid"], APP_A);
    assert_eq!(event["trace_id"], trace_id.as_str());
    assert_eq!(event["version"], 2);
    assert_eq!(
        (&event["errcode"], &event["errmsg"]),
        (&json!(0), &json!("ok"))
    );
    assert_eq!(event["result"], json!({ "suggest": "pass", "label": 100 }));
    assert_eq!(event["detail"][0]["strategy"], "content_model");
    assert_eq!(app.fetches.load(Ordering::SeqCst), 1);

    let report = report_of(&sim, &trace_id).await;
    assert_eq!(report.outcome, PushOutcome::Delivered { attempts: 1 });
    let listed = sim.get_ok("/sim/push").await;
    assert_eq!(listed["targets"][0]["url"], app.url("/push"));
    assert!(!listed.to_string().contains(PUSH_TOKEN), "{listed}");
    assert_eq!(listed["media_checks"][0]["trace_id"], trace_id.as_str());
}

#[tokio::test]
async fn the_images_switch_makes_images_risky() {
    let mut app = AppServer::start(&[]).await;
    let (sim, openid, token) = pushing_to(&app).await;
    let risky = ContentUpdate {
        images: Some(Suggest::Risky),
        ..ContentUpdate::default()
    };
    sim.sim.set_content(risky).expect("content settings");

    submit(&sim, &token, &app.url("/image/16"), &openid).await;
    let pushed = app.next_push().await;
    assert_signed(&pushed, PUSH_TOKEN);
    assert_eq!(
        pushed.event["result"],
        json!({ "suggest": "risky", "label": 20002 })
    );

    sim.post_ok("/sim/content", json!({ "images": "review" }))
        .await;
    submit(&sim, &token, &app.url("/image/16"), &openid).await;
    assert_eq!(app.next_push().await.event["result"]["suggest"], "review");
}

#[tokio::test]
async fn pushes_are_retried_until_the_app_answers_success() {
    let answers = [
        (StatusCode::INTERNAL_SERVER_ERROR, ""),
        (StatusCode::OK, "fail"),
    ];
    let mut app = AppServer::start(&answers).await;
    let (sim, openid, token) = pushing_to(&app).await;

    let trace_id = submit(&sim, &token, &app.url("/image/16"), &openid).await;
    for _ in 0..3 {
        let pushed = app.next_push().await;
        assert_signed(&pushed, PUSH_TOKEN);
        assert_eq!(pushed.event["trace_id"], trace_id.as_str());
    }
    let report = report_of(&sim, &trace_id).await;
    assert_eq!(report.outcome, PushOutcome::Delivered { attempts: 3 });
    // One fetch, however many pushes.
    assert_eq!(app.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn media_that_cannot_be_fetched_gives_a_failed_verdict() {
    let mut app = AppServer::start(&[]).await;
    let (sim, openid, token) = pushing_to(&app).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nowhere = format!("http://{}/avatar.png", closed.local_addr().expect("addr"));
    drop(closed);

    for (url, errcode) in [
        (nowhere, -1),
        (app.url("/missing"), -1),
        (app.url(&format!("/image/{}", 5 * 1024 * 1024 + 1)), 40009),
    ] {
        let trace_id = submit(&sim, &token, &url, &openid).await;
        let pushed = app.next_push().await;
        assert_signed(&pushed, PUSH_TOKEN);
        assert_eq!(pushed.event["trace_id"], trace_id.as_str());
        assert_eq!(pushed.event["errcode"], errcode, "{url}");
        assert_ne!(pushed.event["errmsg"], "ok");
    }
}

#[tokio::test]
async fn without_a_push_url_the_verdict_is_dropped() {
    let app = AppServer::start(&[]).await;
    let sim = Sim::start(TIMEOUT).await;
    let openid = openid_of(&sim, APP_LONE, "carol").await;
    let token = access_token(&sim, APP_LONE).await;

    let trace_id = submit(&sim, &token, &app.url("/image/16"), &openid).await;
    let report = report_of(&sim, &trace_id).await;
    assert_eq!(report.outcome, PushOutcome::NoPushUrl);
    assert_eq!(app.fetches.load(Ordering::SeqCst), 1);
    // Still serving.
    let answer = call(
        &sim,
        "/wxa/msg_sec_check",
        &token,
        &text_check("Carol", &openid),
    )
    .await;
    assert_eq!(verdict_of(&answer).0, "pass");
}

#[tokio::test]
async fn media_check_async_refuses_like_wechat() {
    let app = AppServer::start(&[]).await;
    let (sim, openid, token) = pushing_to(&app).await;
    let stranger = openid_of(&sim, APP_B, "bob").await;
    let image = app.url("/image/16");
    let errcode = |token: &str, body: Value| {
        let (sim, token) = (&sim, token.to_owned());
        async move { call(sim, "/wxa/media_check_async", &token, &body).await["errcode"].clone() }
    };

    assert_eq!(errcode("nope", media_check(&image, &openid)).await, 40001);
    for (field, value) in [
        ("media_type", json!(3)),
        ("media_url", json!("file:///etc/passwd")),
        ("media_url", json!("not a url")),
        ("version", json!(1)),
    ] {
        let mut body = media_check(&image, &openid);
        body[field] = value;
        assert_eq!(errcode(&token, body).await, 40097, "{field}");
    }
    assert_eq!(errcode(&token, media_check(&image, &stranger)).await, 61010);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.fetches.load(Ordering::SeqCst),
        0,
        "refused checks fetch nothing"
    );
}

#[tokio::test]
async fn pending_media_checks_are_capped() {
    let app = AppServer::start(&[]).await;
    let (sim, openid, token) = pushing_to(&app).await;
    // Verdicts that wait ten minutes: every accepted check stays pending.
    let url = app.url("/push");
    let ten_minutes = Duration::from_secs(600);
    sim.sim
        .set_push_with_delay(&appid(APP_A), &url, PUSH_TOKEN, ten_minutes)
        .expect("push target");
    let media = media_check(&app.url("/image/16"), &openid);
    let calls = (0..MAX_PENDING).map(|_| call(&sim, "/wxa/media_check_async", &token, &media));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a["errcode"] == 0));
    let refused = call(&sim, "/wxa/media_check_async", &token, &media).await;
    assert_eq!(refused["errcode"], 45011);
}

#[tokio::test]
async fn faults_apply_to_the_content_apis() {
    let mut app = AppServer::start(&[]).await;
    let (sim, openid, token) = pushing_to(&app).await;
    let text = text_check("Alice", &openid);

    sim.fault(json!({ "api": "msg_sec_check", "errcode": -1 }))
        .await;
    let busy = call(&sim, "/wxa/msg_sec_check", &token, &text).await;
    assert_eq!(busy["errcode"], -1);
    assert_eq!(
        verdict_of(&call(&sim, "/wxa/msg_sec_check", &token, &text).await).0,
        "pass"
    );

    sim.fault(json!({ "api": "msg_sec_check", "latency_ms": 300 }))
        .await;
    let started = Instant::now();
    call(&sim, "/wxa/msg_sec_check", &token, &text).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    sim.fault(json!({ "api": "media_check_async", "errcode": 45011, "times": 2 }))
        .await;
    let media = media_check(&app.url("/image/16"), &openid);
    for _ in 0..2 {
        let refused = call(&sim, "/wxa/media_check_async", &token, &media).await;
        assert_eq!(refused["errcode"], 45011);
    }
    let trace_id = submit(&sim, &token, &app.url("/image/16"), &openid).await;
    assert_eq!(app.next_push().await.event["trace_id"], trace_id.as_str());
    assert_eq!(
        app.fetches.load(Ordering::SeqCst),
        1,
        "faulted calls fetch nothing"
    );
    assert_eq!(sim.calls(Api::MediaCheckAsync), 3);
}

#[tokio::test]
async fn sim_content_and_push_validate_their_input() {
    let sim = Sim::start(TIMEOUT).await;
    let long_token = "a".repeat(33);
    for (path, body) in [
        ("/sim/content", json!({ "images": "maybe" })),
        ("/sim/content", json!({ "risky_words": [""] })),
        ("/sim/content", json!({ "risky_words": vec!["w"; 1001] })),
        ("/sim/content", json!({ "colour": "red" })),
        ("/sim/content", json!([])),
        (
            "/sim/push",
            json!({ "appid": UNKNOWN_APP, "url": "http://127.0.0.1/p", "token": "abc" }),
        ),
        (
            "/sim/push",
            json!({ "appid": APP_A, "url": "ftp://127.0.0.1/p", "token": "abc" }),
        ),
        (
            "/sim/push",
            json!({ "appid": APP_A, "url": "http://127.0.0.1/p", "token": long_token }),
        ),
        (
            "/sim/push",
            json!({ "appid": APP_A, "url": "http://127.0.0.1/p", "token": "abc", "delay_ms": 600_001 }),
        ),
        ("/sim/push", json!({ "appid": APP_A })),
    ] {
        let response = sim.post(path, body.clone()).await;
        assert_eq!(response.status(), 400, "{path} {body}");
        let answer: Value = response.json().await.expect("json error");
        assert!(answer["error"].is_string(), "{answer}");
    }
    assert_eq!(sim.sim.content().risky_words, ["risky", "违规"]);
    let accepted = sim
        .post(
            "/sim/push",
            json!({ "appid": APP_A, "url": "http://127.0.0.1/p", "token": "abc", "delay_ms": 0 }),
        )
        .await;
    assert_eq!(accepted.status(), 204);

    // What a web page could send without a CORS preflight is refused: it could otherwise
    // point the pushes elsewhere from the developer's browser.
    let from_a_page = sim
        .http
        .post(format!("{}/sim/push", sim.base))
        .header("content-type", "text/plain")
        .body(r#"{"appid":"wxa000000000000001","url":"http://127.0.0.1/evil","token":"abc"}"#)
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(from_a_page.status(), 415);
}
