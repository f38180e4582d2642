//! The event stream for analytics: catch-up pages, Server-Sent Events (resume, order), scopes,
//! redaction, the schema catalog, and upcasting of stored old-version events.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{Metadata, SessionId};
use identity_tests::{
    assert_problem, both_backends, json_of, until_ended, Backend, World, ADMIN_TOKEN, APP_A,
};
use infra::store::{AppendBatch, ExpectedVersion, NewEvent, Store};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

both_backends! {
    World:
    catch_up_pages_walk_everything_once,
    bad_parameters_are_invalid_requests,
    every_event_route_checks_its_scope,
    a_reconnecting_consumer_gets_exactly_what_it_missed,
    the_stream_follows_new_events_live,
    analytics_sees_no_personal_data,
    stored_v1_logins_are_read_as_v2,
    the_schema_catalog_covers_every_event_type,
    the_stream_ends_when_the_service_shuts_down,
}

/// `n` events in one append: a new session with `n` refreshes (content does not matter here).
fn refreshes(n: usize) -> AppendBatch {
    let now = chrono::Utc::now();
    let events = (0..n)
        .map(|i| NewEvent {
            event_id: domain::EventId::from_uuid(Uuid::now_v7()),
            event_type: "SessionRefreshed".into(),
            schema_version: 1,
            occurred_at: now,
            payload: json!({ "generation": i + 1 }),
            metadata: Metadata::system(Uuid::now_v7()),
        })
        .collect();
    AppendBatch::default().stream(
        SessionId::from_uuid(Uuid::now_v7()).stream(),
        ExpectedVersion::NoStream,
        events,
    )
}

/// Appends `appends` batches of `each` events; returns the last one's position.
async fn fill(store: &dyn Store, appends: usize, each: usize) -> i64 {
    let mut last = 0;
    for _ in 0..appends {
        let events = store.append(refreshes(each)).await.expect("append");
        last = events.last().expect("events").position;
    }
    last
}

/// Every position in the log, once `through` is readable. On PostgreSQL a committed event may
/// become readable a moment later (when older transactions, anywhere on the server, end), and
/// whatever committed before it is then readable too.
async fn all_positions(store: &dyn Store, through: i64) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut positions = Vec::new();
        let mut after = 0;
        loop {
            let page = store.read_all(after, 1000).await.expect("read");
            let Some(last) = page.last() else {
                break;
            };
            after = last.position;
            positions.extend(page.iter().map(|e| e.position));
        }
        if positions.last().is_some_and(|&last| last >= through) {
            return positions;
        }
        assert!(
            Instant::now() < deadline,
            "position {through} never became readable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event, once `through` is readable (see [`all_positions`]).
async fn read_through(store: &dyn Store, through: i64) -> Vec<infra::store::RecordedEvent> {
    all_positions(store, through).await;
    store.read_all(0, 10_000).await.expect("read")
}

async fn page(world: &World, key: &str, query: &str) -> Value {
    world.get_json(key, &format!("/v1/events{query}")).await
}

/// An SSE message.
#[derive(Debug)]
struct Message {
    id: i64,
    event: String,
    data: Value,
}

/// Reads `GET /v1/events/stream` frame by frame.
struct Consumer {
    response: reqwest::Response,
    buffer: Vec<u8>,
    comments: usize,
}

impl Consumer {
    async fn open(world: &World, key: &str, query: &str, last_event_id: Option<i64>) -> Self {
        let mut call = world
            .call(Method::GET, &format!("/v1/events/stream{query}"))
            .bearer(key);
        if let Some(id) = last_event_id {
            call = call.header("Last-Event-ID", &id.to_string());
        }
        let response = call.send().await;
        assert_eq!(response.status(), 200, "stream{query}");
        let content_type = response.headers()["content-type"].to_str().expect("ASCII");
        assert_eq!(content_type, "text/event-stream");
        Self {
            response,
            buffer: Vec::new(),
            comments: 0,
        }
    }

    /// The next event (comments and `retry:` skipped), within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Message {
        tokio::time::timeout(timeout, self.next_message())
            .await
            .unwrap_or_else(|_| panic!("no event within {timeout:?}"))
    }

    async fn next_message(&mut self) -> Message {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let frame = String::from_utf8(frame).expect("UTF-8 frame");
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in frame.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => self.comments += 1,
                        "id" => id = Some(value.parse::<i64>().expect("numeric id")),
                        "event" => event = Some(value.to_owned()),
                        "data" => data.push_str(value),
                        "retry" => {}
                        other => panic!("unexpected field {other:?} in {frame:?}"),
                    }
                }
                if let (Some(id), Some(event)) = (id, event) {
                    let data = serde_json::from_str(&data).expect("JSON data");
                    return Message { id, event, data };
                }
                continue;
            }
            let chunk = self
                .response
                .chunk()
                .await
                .expect("stream readable")
                .expect("the stream does not end");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

async fn catch_up_pages_walk_everything_once(world: World) {
    let key = world.api_key("events:read").await;
    for user in ["ann", "bob", "cid"] {
        world.login(APP_A, user).await;
    }
    let store = world.store().await;
    let last = fill(store.as_ref(), 4, 25).await;
    let expected = all_positions(store.as_ref(), last).await;
    assert!(expected.len() >= 109, "{}", expected.len());

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let body = page(&world, &key, &format!("?after={after}&limit=7")).await;
        let events = body["events"].as_array().expect("events");
        assert!(events.len() <= 7);
        if events.is_empty() {
            assert_eq!(body["next_after"], after, "an empty page keeps the cursor");
            break;
        }
        for event in events {
            for field in ["event_id", "event_type", "occurred_at", "stream_id"] {
                assert!(event[field].is_string(), "{field} in {event}");
            }
            assert!(event["payload"].is_object(), "{event}");
            seen.push(event["position"].as_i64().expect("position"));
        }
        assert_eq!(body["next_after"], *seen.last().expect("not empty"));
        after = body["next_after"].as_i64().expect("an integer");
    }
    assert_eq!(seen, expected, "every event once, in position order");

    // Defaults: from the beginning, 100 at a time.
    let first = page(&world, &key, "").await;
    assert_eq!(first["events"].as_array().expect("an array").len(), 100);
    assert_eq!(first["events"][0]["position"], expected[0]);
    let big = page(&world, &key, "?limit=1000").await;
    assert_eq!(
        big["events"].as_array().expect("an array").len(),
        expected.len()
    );
    let past_the_end = page(
        &world,
        &key,
        &format!("?after={}", expected.last().expect("not empty") + 1000),
    )
    .await;
    assert_eq!(past_the_end["events"], json!([]));
}

async fn bad_parameters_are_invalid_requests(world: World) {
    let key = world.api_key("events:read").await;
    for query in [
        "?after=-1",
        "?after=x",
        "?after=1.5",
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?cursor=abc",
        "?after=1&after=2",
    ] {
        let response = world.get_as(&key, &format!("/v1/events{query}")).await;
        assert_problem(response, 400, "invalid_request").await;
    }
    for query in ["?after=-3", "?limit=5", "?from=0"] {
        let response = world
            .get_as(&key, &format!("/v1/events/stream{query}"))
            .await;
        assert_problem(response, 400, "invalid_request").await;
    }
    for id in ["abc", "-1", ""] {
        let response = world
            .call(Method::GET, "/v1/events/stream")
            .bearer(&key)
            .header("Last-Event-ID", id)
            .send()
            .await;
        assert_problem(response, 400, "invalid_request").await;
    }
}

async fn every_event_route_checks_its_scope(world: World) {
    let admin = world.api_key("admin:read,admin:write").await;
    let events = world.api_key("events:read").await;
    let user = world.login(APP_A, "dan").await;
    let access = &user.access;
    for path in ["/v1/events", "/v1/events/stream"] {
        world
            .assert_refused_to(Method::GET, path, None, &[&admin, access])
            .await;
    }
    assert_eq!(world.get_as(&events, "/v1/events").await.status(), 200);
    let mut stream = Consumer::open(&world, &events, "", None).await;
    assert_eq!(
        stream.next(Duration::from_secs(10)).await.event,
        "UserRegistered"
    );
    // The bootstrap token holds every scope.
    assert_eq!(world.get_as(ADMIN_TOKEN, "/v1/events").await.status(), 200);
    // The catalog describes the contract only: public.
    assert_eq!(world.get("/v1/events/schema").await.status(), 200);
}

async fn a_reconnecting_consumer_gets_exactly_what_it_missed(world: World) {
    let key = world.api_key("events:read").await;
    let store = world.store().await;
    let last = fill(store.as_ref(), 3, 10).await;
    let positions = all_positions(store.as_ref(), last).await;

    let mut first = Consumer::open(&world, &key, "", None).await;
    let mut received = Vec::new();
    for _ in 0..12 {
        received.push(first.next(Duration::from_secs(10)).await.id);
    }
    assert_eq!(received, positions[..12]);
    drop(first); // disconnects mid-stream, its page half sent

    let end = fill(store.as_ref(), 2, 10).await;
    let positions = all_positions(store.as_ref(), end).await;
    assert_eq!(positions.len(), 50);
    let last = *received.last().expect("not empty");
    // `?after=0` is what an EventSource sends again; Last-Event-ID wins.
    let mut again = Consumer::open(&world, &key, "?after=0", Some(last)).await;
    for _ in 12..50 {
        received.push(again.next(Duration::from_secs(10)).await.id);
    }
    assert_eq!(received, positions, "every event exactly once, in order");

    // `?after=` alone resumes too.
    let mut by_query =
        Consumer::open(&world, &key, &format!("?after={}", positions[47]), None).await;
    assert_eq!(
        by_query.next(Duration::from_secs(10)).await.id,
        positions[48]
    );
    assert_eq!(
        by_query.next(Duration::from_secs(10)).await.id,
        positions[49]
    );
}

async fn the_stream_follows_new_events_live(world: World) {
    let key = world.api_key("events:read").await;
    let mut consumer = Consumer::open(&world, &key, "", None).await;
    // Through the service: its own append wakes the stream.
    let login = world.login(APP_A, "eve").await;
    let started = Instant::now();
    let registered = consumer.next(Duration::from_secs(5)).await;
    assert_eq!(registered.event, "UserRegistered");
    assert_eq!(registered.data["user_id"], login["user"]["user_id"]);
    assert_eq!(registered.data["position"], registered.id);
    let mut types = vec![registered.event];
    while types.last().map(String::as_str) != Some("UserLoggedIn") {
        types.push(consumer.next(Duration::from_secs(5)).await.event);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // By another writer: polling (SQLite) or NOTIFY (PostgreSQL) picks it up.
    let store = world.store().await;
    fill(store.as_ref(), 1, 3).await;
    for _ in 0..3 {
        assert_eq!(
            consumer.next(Duration::from_secs(5)).await.event,
            "SessionRefreshed"
        );
    }
}

const NICKNAME: &str = "诸葛亮 Kongming";
const CITY: &str = "Wolong-Test-City";
const USER_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x1800442a)";

async fn analytics_sees_no_personal_data(world: World) {
    let key = world.api_key("events:read").await;
    let login = world.login_from(APP_A, "liang", USER_AGENT).await;
    let profile = json!({ "nickName": NICKNAME, "city": CITY, "province": "Sichuan" });
    world
        .share_profile(&login.access, APP_A, "liang", profile)
        .await;
    world.bind_phone(&login.access, APP_A, "liang").await;
    let avatar = world.upload_avatar(&login.access, &tiny_png()).await;
    assert_eq!(avatar.status(), 200, "{:?}", avatar.text().await);

    // What must not leak: the clear values, and the stored sealed blobs and hashes.
    let store = world.store().await;
    let marker = fill(store.as_ref(), 1, 1).await;
    let stored = read_through(store.as_ref(), marker).await;
    let mut secrets = vec![
        NICKNAME.to_owned(),
        CITY.to_owned(),
        infra::wechat::sim::Simulator::phone_number_of("liang"),
        "127.0.0.1".to_owned(),
        "iPhone".to_owned(),
        "MicroMessenger".to_owned(),
    ];
    for event in &stored {
        // An avatar's id opens the person's photo at the public `/v1/avatars/{id}`.
        for field in ["profile", "phone", "phone_index", "client_ip", "avatar_id"] {
            if let Some(Value::String(value)) = event.payload.get(field) {
                secrets.push(value.clone());
            }
        }
    }
    let types: BTreeSet<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
    for t in [
        "ProfileAuthorized",
        "ProfileUpdated",
        "PhoneNumberBound",
        "UserLoggedIn",
    ] {
        assert!(types.contains(t), "{types:?}");
    }

    let listed = page(&world, &key, "?limit=1000").await;
    let events = listed["events"].as_array().expect("an array");
    assert_eq!(events.len(), stored.len());
    let mut consumer = Consumer::open(&world, &key, "", None).await;
    let mut streamed = Vec::new();
    for _ in 0..stored.len() {
        streamed.push(consumer.next(Duration::from_secs(10)).await.data);
    }
    assert_eq!(
        &streamed, events,
        "the stream and the pages show the same views"
    );
    let text = listed.to_string();
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret:?} leaked: {text}");
    }
    let bound = events
        .iter()
        .find(|e| e["event_type"] == "PhoneNumberBound")
        .expect("the phone binding");
    assert_eq!(bound["user_id"], login["user"]["user_id"]);
    assert_eq!(bound["payload"]["phone"], "[redacted]");
    let logged_in = events
        .iter()
        .find(|e| e["event_type"] == "UserLoggedIn")
        .expect("the login");
    assert_eq!(logged_in["appid"], APP_A);
    assert_eq!(logged_in["schema_version"], 3);
    // Analytics sees the user id, never the openid.
    assert_eq!(logged_in["user_id"], login["user"]["user_id"]);
    assert_eq!(logged_in["payload"]["openid"], "[redacted]");
    assert!(!text.contains(login["user"]["openid"].as_str().expect("openid")));
    assert!(logged_in.get("metadata").is_none());
    let updated = events
        .iter()
        .find(|e| e["event_type"] == "ProfileUpdated")
        .expect("the avatar upload");
    assert_eq!(updated["payload"]["avatar_id"], "[redacted]");
}

/// A 2×2 PNG.
fn tiny_png() -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::RgbaImage::from_pixel(2, 2, image::Rgba([10, 20, 30, 255]))
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode");
    bytes.into_inner()
}

async fn stored_v1_logins_are_read_as_v2(world: World) {
    let store = world.store().await;
    let session = SessionId::from_uuid(Uuid::now_v7());
    let user = Uuid::now_v7();
    let v1 = |device: Value| NewEvent {
        event_id: domain::EventId::from_uuid(Uuid::now_v7()),
        event_type: "UserLoggedIn".into(),
        schema_version: 1,
        occurred_at: chrono::Utc::now(),
        payload: json!({
            "session_id": session.to_string(), "user_id": user, "appid": APP_A,
            "openid": "o_v1", "is_new_user": true, "client_ip": "203.0.113.5", "device": device,
        }),
        metadata: Metadata::system(Uuid::now_v7()),
    };
    let appended = store
        .append(AppendBatch::default().stream(
            session.stream(),
            ExpectedVersion::NoStream,
            vec![v1(json!(USER_AGENT))],
        ))
        .await
        .expect("append a v1 event");
    let other = SessionId::from_uuid(Uuid::now_v7());
    store
        .append(AppendBatch::default().stream(
            other.stream(),
            ExpectedVersion::NoStream,
            vec![v1(Value::Null)],
        ))
        .await
        .expect("append a v1 event without device");

    let expected_device = json!({
        "user_agent": USER_AGENT, "platform": "ios", "wechat_version": "8.0.44",
    });
    // Every way of reading sees the current version (v3: v2 plus sealing, no change of
    // shape): append's answer, the stream, the log.
    assert_eq!(appended[0].schema_version, 3);
    assert_eq!(appended[0].payload["device"], expected_device);
    let loaded = store.load_stream(&session.stream()).await.expect("load");
    assert_eq!(loaded, appended);
    let marker = fill(store.as_ref(), 1, 1).await;
    let all = read_through(store.as_ref(), marker).await;
    assert_eq!(all[0], appended[0]);
    assert_eq!(all[1].schema_version, 3);
    assert!(all[1].payload["device"].is_null());
    // And the domain decodes them.
    let decoded: domain::SessionEvent =
        domain::events::from_stored(&loaded[0].event_type, &loaded[0].payload).expect("decodes");
    let domain::SessionEvent::UserLoggedIn { device, .. } = decoded else {
        panic!("{decoded:?}")
    };
    let device = device.expect("a device");
    assert_eq!(device.platform.as_deref(), Some("ios"));
    assert_eq!(device.wechat_version.as_deref(), Some("8.0.44"));

    let key = world.api_key("events:read").await;
    let listed = page(&world, &key, "").await;
    assert_eq!(listed["events"][0]["schema_version"], 3);
    assert_eq!(
        listed["events"][0]["payload"]["device"]["user_agent"],
        "[redacted]"
    );

    // A login through the service writes v3: the device sealed under the user's data key.
    let android = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.47.2560(0x28002F30)";
    world.login_from(APP_A, "neo", android).await;
    let marker = fill(store.as_ref(), 1, 1).await;
    let all = read_through(store.as_ref(), marker).await;
    let login = all
        .iter()
        .rfind(|e| e.event_type == "UserLoggedIn")
        .expect("the login");
    assert_eq!(login.schema_version, 3);
    let device = login.payload["device"].as_str().expect("sealed");
    assert!(device.starts_with("pd1."), "{device}");
    assert!(!format!("{login:?}").contains("Android"));
}

async fn the_schema_catalog_covers_every_event_type(world: World) {
    let catalog = json_of(world.get("/v1/events/schema").await).await;
    let events = catalog["events"].as_object().expect("events");
    for name in [
        "UserRegistered",
        "WeChatAccountLinked",
        "UnionIdLinked",
        "UserLoggedIn",
        "LoginRejected",
        "ProfileAuthorized",
        "ProfileUpdated",
        "AvatarRejected",
        "PhoneNumberBound",
        "AuthorizationRevoked",
        "SessionRefreshed",
        "UserLoggedOut",
        "SessionRevoked",
        "UserBlocked",
        "UserUnblocked",
        "UserErased",
    ] {
        let entry = &events[name];
        assert!(
            entry["payload"]["properties"].is_object(),
            "{name}: {entry}"
        );
        assert!(
            entry["schema_version"].as_u64().expect("an integer") >= 1,
            "{name}"
        );
    }
    assert_eq!(events.len(), 16);
    let login = &events["UserLoggedIn"];
    assert_eq!(login["schema_version"], 3);
    assert_eq!(login["history"].as_array().expect("an array").len(), 3);
    // Sealed under the user's data key: a `pd1.` string, or null.
    assert_eq!(
        login["payload"]["properties"]["device"]["type"],
        json!(["string", "null"])
    );
}

async fn the_stream_ends_when_the_service_shuts_down(world: World) {
    let key = world.api_key("events:read").await;
    let second = world.spawn_instance(|_| {}).await;
    let mut response = world.open_event_stream(&second.base, &key).await;
    // Graceful shutdown would otherwise wait for the endless response forever.
    drop(second);
    until_ended(&mut response, Duration::from_secs(5)).await;
}

/// Proof of order: 16 writers append 100,000 events (100 per append) on PostgreSQL while one
/// live SSE consumer reads; it must receive every event exactly once, in position order.
/// About 15 s in a debug build.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_live_stream_sees_100k_concurrent_events_once_in_order() {
    proof_of_order(100_000).await;
}

async fn proof_of_order(total: usize) {
    const WRITERS: usize = 16;
    const PER_APPEND: usize = 100;
    let Some(world) = World::start(Backend::Postgres).await else {
        return;
    };
    let key = world.api_key("events:read").await;
    let started = Instant::now();
    let mut consumer = Consumer::open(&world, &key, "", None).await;
    let store: Arc<dyn Store> = world.store().await;
    let appends = total / PER_APPEND;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in (w..appends).step_by(WRITERS) {
                    store.append(refreshes(PER_APPEND)).await.expect("append");
                }
            })
        })
        .collect();

    let mut received = Vec::with_capacity(total);
    let mut while_writing = 0;
    while received.len() < total {
        let message = consumer.next(Duration::from_secs(30)).await;
        assert_eq!(message.data["position"], message.id);
        if let Some(&last) = received.last() {
            assert!(message.id > last, "{} after {last}", message.id);
        }
        received.push(message.id);
        if !writers.iter().all(|w| w.is_finished()) {
            while_writing += 1;
        }
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let written = started.elapsed();
    let positions = all_positions(store.as_ref(), *received.last().expect("not empty")).await;
    assert_eq!(positions.len(), total);
    assert_eq!(
        received, positions,
        "every event exactly once, in position order"
    );
    // Nothing more arrives.
    let extra = tokio::time::timeout(Duration::from_millis(500), consumer.next_message()).await;
    assert!(extra.is_err(), "an extra event: {extra:?}");
    assert!(
        while_writing > 0,
        "the consumer was not live while the writers wrote"
    );
    eprintln!(
        "proof of order: {total} events by {WRITERS} writers streamed in {written:?}, \
         {while_writing} of them while the writers were still writing"
    );
}
