//! With `IDENTITY_NATS_URL` set the service relays its log to JetStream, and says how far it
//! got in `/readyz` and `/metrics`.

use std::time::{Duration, Instant};

use identity_tests::{both_backends, json_of, World, APP_A};

both_backends!(World: relay_progress_is_reported);

async fn relay_progress_is_reported(world: World) {
    let Some(nats) = testkit::nats_url().await else {
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
