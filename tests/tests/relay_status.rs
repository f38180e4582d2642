//! With `IDENTITY_NATS_URL` set the service relays its log to JetStream, and says how far it
//! got in `/readyz` and `/metrics`.

use std::time::{Duration, Instant};

use identity_tests::{json_of, Backend, World, APP_A};

async fn relay_progress_is_reported(backend: Backend) {
    let Some(nats) = testkit::nats_url().await else {
        return;
    };
    let Some(world) = World::start(backend).await else {
        return;
    };
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let stream = format!("IDENTITY_TEST_{suffix}");
    let relaying = world
        .spawn_instance(|config| {
            config.nats_url = Some(nats.clone());
            config.nats_stream = stream.clone();
            config.nats_subject_prefix = format!("identity.test.{suffix}");
        })
        .await;
    world.login(APP_A, "relayed").await;

    let started = Instant::now();
    loop {
        let ready = json_of(world.get_at(&relaying.base, "/readyz").await).await;
        let relay = &ready["nats_relay"];
        assert_eq!(relay["stream"], stream.as_str(), "{ready}");
        if relay["position"].as_i64().unwrap_or(0) >= 3 && relay["lag"] == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "relay stuck: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = world.get_at(&relaying.base, "/metrics").await;
    let metrics = metrics.text().await.expect("text");
    assert!(
        metrics.contains("identity_nats_relay_lag_events 0"),
        "{metrics}"
    );

    // Clean up the test's stream on the shared server.
    let client = async_nats::connect(&nats).await.expect("connect");
    let _ = async_nats::jetstream::new(client)
        .delete_stream(&stream)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_relay_progress_is_reported() {
    relay_progress_is_reported(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_relay_progress_is_reported() {
    relay_progress_is_reported(Backend::Postgres).await;
}
