//! The edge, tried as an attacker would: half-sent requests, idle and surplus connections, a
//! chosen `X-Forwarded-For` or `x-request-id`, guessed API keys and cloud-login signatures.
//! Nothing here depends on storage, so it runs on SQLite only.

use std::time::{Duration, Instant};

use api::config::{Config, TrustedProxies};
use identity_tests::{assert_problem, Backend, Signed, TestApp, World, APP_A, CLOUD_SECRET_A};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn world() -> World {
    World::start(Backend::Sqlite).await.expect("SQLite world")
}

/// `key` with its secret part replaced: a well-formed key that is wrong.
fn wrong_key(key: &str) -> String {
    let (_, secret) = infra::api_keys::split_token(key).expect("a key");
    key.replace(secret, &"0".repeat(secret.len()))
}

/// A SQLite world and one more instance of its service, configured by `adjust`.
async fn instance(adjust: impl FnOnce(&mut Config)) -> (World, TestApp) {
    let world = world().await;
    let app = world.spawn_instance(adjust).await;
    (world, app)
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(addr(app)).await.expect("connect")
}

/// `/healthz` on `app` answers 200 within `wait`, and in less than `under`.
async fn healthz_answers(world: &World, app: &TestApp, wait: Duration, under: Duration) {
    let started = Instant::now();
    let healthy = tokio::time::timeout(wait, world.get_at(&app.base, "/healthz"))
        .await
        .expect("healthz answers in time");
    assert_eq!(healthy.status(), 200);
    assert!(started.elapsed() < under, "{:?}", started.elapsed());
}

/// Reads until the server closes the connection; what it sent, and how long that took.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection is still open after {within:?}"
    );
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_sent_head_or_an_idle_connection_is_closed() {
    let (_world, app) = instance(|c| c.header_read_timeout_secs = 1).await;
    let mut half = connect(&app).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let mut idle = connect(&app).await;
    let (_, took) = until_closed(&mut half, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    until_closed(&mut idle, Duration::from_secs(5)).await;
}

/// The measure, with the shipped defaults: a client that never finishes its headers is
/// cut off within 45 s (the header timeout is 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_defaults_a_half_sent_request_is_closed_within_45_s() {
    let defaults = Config::load(None).expect("defaults");
    let (_world, app) = instance(|c| {
        c.header_read_timeout_secs = defaults.header_read_timeout_secs;
        c.request_timeout_secs = defaults.request_timeout_secs;
    })
    .await;
    let mut half = connect(&app).await;
    half.write_all(b"POST /v1/wechat/login HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let (_, took) = until_closed(&mut half, Duration::from_secs(45)).await;
    assert!(took >= Duration::from_secs(9), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_sent_body_is_answered_408_and_closed() {
    let (world, app) = instance(|c| c.request_timeout_secs = 1).await;
    let mut half = connect(&app).await;
    half.write_all(
        b"POST /v1/wechat/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"appid\":",
    )
    .await
    .expect("write");
    let (answer, took) = until_closed(&mut half, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(
        took >= Duration::from_millis(800),
        "answered after {took:?}"
    );
    // Whole requests on the same service are answered as usual.
    assert_eq!(world.get_at(&app.base, "/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_idle_connections_leave_healthz_answering() {
    let world = world().await;
    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        idle.push(connect(&world.app).await);
    }
    healthz_answers(
        &world,
        &world.app,
        Duration::from_secs(5),
        Duration::from_secs(2),
    )
    .await;
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_cap_wait_for_a_free_one() {
    let (world, app) = instance(|c| {
        c.max_connections = 2;
        c.header_read_timeout_secs = 2;
    })
    .await;
    let _idle: Vec<TcpStream> = vec![connect(&app).await, connect(&app).await];
    let healthz = || world.get_at(&app.base, "/healthz");
    let over_the_cap = tokio::time::timeout(Duration::from_millis(800), healthz()).await;
    assert!(
        over_the_cap.is_err(),
        "a third connection was served at once"
    );
    // The idle ones are closed by the header timeout; then the next one is served.
    let served = tokio::time::timeout(Duration::from_secs(6), healthz())
        .await
        .expect("served once a connection is free");
    assert_eq!(served.status(), 200);
}

/// POSTs, one after another, logins the limiter sees (and then refuses as malformed), each
/// from its `X-Forwarded-For`; each must be answered its status.
async fn logins_from(world: &World, app: &TestApp, answers: &[(&str, u16)]) {
    for &(forwarded_for, status) in answers {
        let answer = world
            .call_at(&app.base, Method::POST, "/v1/wechat/login")
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({ "appid": "not-an-appid", "code": "c" }))
            .send()
            .await;
        assert_eq!(answer.status(), status, "from {forwarded_for}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_ip_is_the_rightmost_forwarded_address_not_a_trusted_proxy() {
    let limited_behind = |proxies: &str| {
        let proxies = TrustedProxies::parse(proxies).expect("proxies");
        move |c: &mut Config| {
            c.login_rate_per_minute = 1;
            c.trusted_proxies = proxies;
        }
    };
    let (world, behind_proxy) = instance(limited_behind("127.0.0.0/8")).await;
    let answers = [
        // The client writes the leftmost entries; our proxy (the TCP peer) appended the last.
        ("203.0.113.50", 400),
        // A spoofed leftmost entry does not make a new client.
        ("6.6.6.6, 203.0.113.50", 429),
        ("203.0.113.51", 400),
        // IPv6 counts by /64.
        ("2001:db8:0:1::1", 400),
        ("2001:db8:0:1::2", 429),
        ("2001:db8:0:2::1", 400),
    ];
    logins_from(&world, &behind_proxy, &answers).await;

    // With no trusted proxy (the default) the header is not read at all.
    let direct = world.spawn_instance(|c| c.login_rate_per_minute = 1).await;
    logins_from(
        &world,
        &direct,
        &[("203.0.113.60", 400), ("203.0.113.61", 429)],
    )
    .await;

    // Nor when the peer is not one of the trusted proxies.
    let elsewhere = world.spawn_instance(limited_behind("10.0.0.0/8")).await;
    let answers = [
        ("10.0.0.1, 203.0.113.70", 400),
        ("10.0.0.1, 203.0.113.71", 429),
    ];
    logins_from(&world, &elsewhere, &answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_request_id_is_replaced_by_a_minted_one() {
    let world = world().await;
    let store = world.store().await;
    let code = world.wx_login(APP_A, "alice").await;
    let answer = world
        .call(Method::POST, "/v1/wechat/login")
        .header("x-request-id", "<script>alert(1)</script> forged log line")
        .json(&json!({ "appid": APP_A, "code": code }))
        .send()
        .await;
    assert_eq!(answer.status(), 200);
    let echoed = answer.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let minted = uuid::Uuid::try_parse(&echoed).expect("a minted UUID is echoed");
    // The echoed id is the events' correlation id.
    let events = store.read_all(0, 100).await.expect("read");
    assert!(events.iter().any(|e| e.metadata.correlation_id == minted));

    // A caller's UUID is kept.
    let mine = uuid::Uuid::now_v7();
    let answer = world
        .call(Method::GET, "/healthz")
        .header("x-request-id", &mine.to_string())
        .send()
        .await;
    assert_eq!(answer.headers()["x-request-id"], mine.to_string().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guessing_api_keys_is_refused_per_client() {
    let (world, app) = instance(|c| {
        c.auth_failures_per_minute = 3;
        c.trusted_proxies = TrustedProxies::parse("127.0.0.1").expect("proxies");
    })
    .await;
    let key = world.api_key("admin:read").await;
    let wrong = wrong_key(&key);
    let attempt = |token: String, client: &'static str| {
        world
            .call_at(&app.base, Method::GET, "/v1/admin/logins")
            .bearer(&token)
            .header("x-forwarded-for", client)
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(attempt(wrong.clone(), "203.0.113.9").await.status());
    }
    assert_eq!(statuses[..3], [401, 401, 401], "{statuses:?}");
    assert_eq!(statuses[3..], [429, 429, 429], "{statuses:?}");
    // Barred, the client's wrong keys are refused with 429; a right key still passes, so a
    // neighbour behind the same address cannot lock a caller out.
    let barred = attempt(wrong.clone(), "203.0.113.9").await;
    assert!(barred.headers().contains_key("retry-after"));
    assert_problem(barred, 429, "rate_limited").await;
    assert_eq!(
        attempt(key.clone(), "203.0.113.9").await.status(),
        200,
        "a right key from a barred address"
    );
    // Another client is not affected.
    assert_eq!(attempt(wrong, "203.0.113.10").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_keys_sent_all_at_once_get_no_more_401s_than_the_budget() {
    let (world, app) = instance(|c| c.auth_failures_per_minute = 10).await;
    let key = world.api_key("admin:read").await;
    let wrong = wrong_key(&key);
    let attempts = (0..300).map(|_| {
        world
            .call_at(&app.base, Method::GET, "/v1/admin/logins")
            .bearer(&wrong)
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|answer| answer.status().as_u16())
        .collect();
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    assert!(unauthorized <= 10, "{unauthorized} answers of 401");
    assert_eq!(
        unauthorized + statuses.iter().filter(|s| **s == 429).count(),
        300
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guessing_cloud_login_signatures_is_refused_per_client() {
    let (world, app) = instance(|c| c.auth_failures_per_minute = 2).await;
    let context = json!({ "appid": APP_A, "openid": "o-cloud-edge" });
    let post = |secret: &str| world.cloud_login_at(&app.base, &Signed::now(secret, &context));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post("a guessed secret").await.status());
    }
    assert_eq!(statuses, [401, 401, 429, 429], "{statuses:?}");
    let barred = post("a guessed secret").await;
    let problem = assert_problem(barred, 429, "rate_limited").await;
    assert!(problem.get("hint").is_none());
    // WeChat cloud functions leave from shared addresses: a neighbour's bad signatures do not
    // lock out a caller with the right secret.
    assert_eq!(post(CLOUD_SECRET_A).await.status(), 200);
}

/// A client that pipelines requests for a large body over a tiny receive window and never
/// reads: the server's writes stall.
fn slow_reader(app: &TestApp, requests: usize) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let addr: std::net::SocketAddr = addr(app).parse().expect("address");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(requests);
    std::io::Write::write_all(&mut stream, &request).expect("pipeline");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_stop_reading_lose_their_connection() {
    let (world, app) = instance(|c| {
        c.max_connections = 4;
        c.write_timeout_secs = 1;
    })
    .await;
    // Every connection the cap allows, held by a client that does not read.
    let _stuck: Vec<_> = (0..4).map(|_| slow_reader(&app, 200)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // It answers once the stalled connections are closed.
    healthz_answers(
        &world,
        &app,
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_take_every_connection() {
    let (world, app) = instance(|c| c.max_connections_per_ip = 2).await;
    let idle: Vec<TcpStream> = vec![connect(&app).await, connect(&app).await];
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third from the same address is closed at once, not left waiting.
    let mut third = connect(&app).await;
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (answer, _) = until_closed(&mut third, Duration::from_secs(2)).await;
    assert!(answer.is_empty(), "{answer}");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = world.get_at(&app.base, "/healthz").await;
    assert_eq!(served.status(), 200);
}
