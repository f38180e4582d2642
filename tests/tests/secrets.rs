//! `session_key` and app secrets appear nowhere: not in responses, logs, events, or the
//! database files in clear. Logs are captured for this whole test binary at debug level.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_tests::{Backend, World, APP_A, APP_B};
use serde_json::Value;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// Logs in a few times and returns every session key WeChat handed out, with the responses.
async fn exercise(world: &World) -> (Vec<String>, String) {
    let mut keys = Vec::new();
    let mut responses = String::new();
    for (appid, user) in [
        (APP_A, "sam"),
        (APP_A, "sam"),
        (APP_B, "sam"),
        (APP_A, "tess"),
    ] {
        let login = world.login(appid, user).await;
        let openid = login["user"]["openid"].as_str().expect("openid").to_owned();
        keys.push(
            world
                .simulator
                .current_session_key(appid, &openid)
                .expect("simulator knows the key"),
        );
        responses.push_str(&login.to_string());
        let me: Value = world
            .http
            .get(world.url("/v1/me"))
            .bearer_auth(login["access_token"].as_str().expect("token"))
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("JSON");
        responses.push_str(&me.to_string());
    }
    (keys, responses)
}

/// Every way a session key could leak: its base64 text, its raw 16 bytes, their hex.
fn needles(keys: &[String]) -> Vec<Vec<u8>> {
    let mut needles = vec![b"secret-a".to_vec(), b"secret-b".to_vec()];
    for key in keys {
        needles.push(key.as_bytes().to_vec());
        let raw = STANDARD.decode(key).expect("session keys are base64");
        // PostgreSQL renders bytea as hex.
        needles.push(
            raw.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        );
        needles.push(raw);
    }
    needles
}

fn assert_absent(haystack: &[u8], needles: &[Vec<u8>], place: &str) {
    for needle in needles {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice()),
            "a secret appears in {place}"
        );
    }
}

async fn all_events(world: &World) -> Vec<u8> {
    testkit::wait_until_log_readable(&world.database_url).await;
    let store = world.store().await;
    let events = store.read_all(0, 10_000).await.expect("read_all");
    assert!(!events.is_empty());
    let mut text = Vec::new();
    for event in events {
        write!(
            text,
            "{} {} {:?}",
            event.event_type, event.payload, event.metadata
        )
        .expect("write");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_secrets_out_of_everything() {
    let logs = logs();
    let world = World::start(Backend::Sqlite).await.expect("SQLite");
    let (keys, responses) = exercise(&world).await;
    assert_eq!(keys.len(), 4);
    let needles = needles(&keys);
    assert_absent(responses.as_bytes(), &needles, "responses");
    assert_absent(&all_events(&world).await, &needles, "events");

    let path = world
        .database_url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .to_owned();
    let mut files = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
            files.extend(bytes);
        }
    }
    assert!(files.len() > 4096, "read the database files");
    assert_absent(&files, &needles, "the SQLite files");
    assert_absent(&logs.0.lock().expect("logs"), &needles, "the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_secrets_out_of_everything() {
    let logs = logs();
    let Some(world) = World::start(Backend::Postgres).await else {
        return;
    };
    let (keys, responses) = exercise(&world).await;
    let needles = needles(&keys);
    assert_absent(responses.as_bytes(), &needles, "responses");
    assert_absent(&all_events(&world).await, &needles, "events");
    let dump = testkit::dump_postgres_tables(&world.database_url).await;
    assert!(
        dump.contains("UserLoggedIn"),
        "the dump covers the events table"
    );
    assert_absent(dump.as_bytes(), &needles, "the PostgreSQL tables");
    assert_absent(&logs.0.lock().expect("logs"), &needles, "the logs");
}
