//! `session_key` and app secrets appear nowhere: not in responses, logs, events, or the
//! database files in clear. Logs are captured for this whole test binary at debug level.

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use identity_tests::{both_backends, Captured, World, APP_A, APP_B};

both_backends!(Logged: keeps_secrets_out_of_everything);

/// A world whose every log line, from its start on, is captured.
struct Logged(World);

impl testkit::Fixture for Logged {
    async fn start(backend: testkit::Backend) -> Option<Self> {
        logs();
        World::start(backend).await.map(Logged)
    }
}

fn logs() -> &'static Captured {
    Captured::install("debug", false)
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
        let me = world.get_json(&login.access, "/v1/me").await;
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
    let events = world.log().await;
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

async fn keeps_secrets_out_of_everything(Logged(world): Logged) {
    let logs = logs();
    let (keys, responses) = exercise(&world).await;
    assert_eq!(keys.len(), 4);
    let needles = needles(&keys);
    assert_absent(responses.as_bytes(), &needles, "responses");
    assert_absent(&all_events(&world).await, &needles, "events");
    let stored = world.database_bytes().await;
    assert!(
        String::from_utf8_lossy(&stored).contains("UserLoggedIn"),
        "read the database, the events table included"
    );
    assert_absent(&stored, &needles, "the database");
    assert_absent(logs.text().as_bytes(), &needles, "the logs");
}
