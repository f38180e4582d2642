//! Open event streams answer to their API key: a revoked key's streams end (on every
//! instance: keys live in the database), a key holds a few streams at most, and streams are
//! exempt from the request timeout.

use std::time::{Duration, Instant};

use identity_tests::{assert_problem, both_backends, World, APP_A};

both_backends!(
    World:
    a_revoked_keys_open_stream_ends_within_10_s,
    open_streams_per_key_are_capped,
    the_stream_outlives_the_request_timeout,
);

/// `GET /v1/events/stream` on `base`, its first chunk (the `retry:` hello) read.
async fn open_stream(world: &World, base: &str, key: &str) -> reqwest::Response {
    let mut response = world
        .http
        .get(format!("{base}/v1/events/stream"))
        .bearer_auth(key)
        .send()
        .await
        .expect("service answers");
    assert_eq!(response.status(), 200);
    let hello = response.chunk().await.expect("readable").expect("a hello");
    assert!(hello.starts_with(b"retry:"), "{hello:?}");
    response
}

/// Reads until the response ends; how long that took.
async fn until_ended(response: &mut reqwest::Response, within: Duration) -> Duration {
    let started = Instant::now();
    let ended = tokio::time::timeout(within, async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream is still open after {within:?}");
    started.elapsed()
}

async fn a_revoked_keys_open_stream_ends_within_10_s(world: World) {
    let key = world.api_key("events:read").await;
    let other_key = world.api_key("events:read").await;
    let second = world.spawn_instance(|_| {}).await;
    let mut on_first = open_stream(&world, &world.app.base, &key).await;
    let mut on_second = open_stream(&world, &second.base, &key).await;
    let mut unrelated = open_stream(&world, &second.base, &other_key).await;

    let (key_id, _) = infra::api_keys::split_token(&key).expect("a key");
    world
        .store()
        .await
        .revoke_api_key(key_id, chrono::Utc::now())
        .await
        .expect("revoke")
        .expect("the key exists");
    until_ended(&mut on_first, Duration::from_secs(10)).await;
    until_ended(&mut on_second, Duration::from_secs(10)).await;

    // Other keys' streams go on: a new event still arrives on them.
    world.login(APP_A, "alice").await;
    let next = tokio::time::timeout(Duration::from_secs(10), unrelated.chunk())
        .await
        .expect("an event within 10 s")
        .expect("readable");
    assert!(next.is_some(), "the unrelated stream ended");
    let refused = world.get_as(&key, "/v1/events/stream").await;
    assert_problem(refused, 401, "unauthorized").await;
}

async fn open_streams_per_key_are_capped(world: World) {
    let app = world.spawn_instance(|c| c.max_streams_per_key = 2).await;
    let key = world.api_key("events:read").await;
    let first = open_stream(&world, &app.base, &key).await;
    let _second = open_stream(&world, &app.base, &key).await;
    let third = world
        .http
        .get(format!("{}/v1/events/stream", app.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("answers");
    assert!(third.headers().contains_key("retry-after"));
    let problem = assert_problem(third, 429, "rate_limited").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("IDENTITY_MAX_STREAMS_PER_KEY")),
        "{problem}"
    );
    // Another key has slots of its own.
    let other = world.api_key("events:read").await;
    let _other = open_stream(&world, &app.base, &other).await;

    // A closed stream frees its slot (noticed at the next write to it: an event).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        world.login(APP_A, "bob").await;
        let again = world
            .http
            .get(format!("{}/v1/events/stream", app.base))
            .bearer_auth(&key)
            .send()
            .await
            .expect("answers");
        if again.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn the_stream_outlives_the_request_timeout(world: World) {
    let app = world.spawn_instance(|c| c.request_timeout_secs = 1).await;
    let key = world.api_key("events:read").await;
    let mut stream = open_stream(&world, &app.base, &key).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    world.login(APP_A, "carol").await;
    let next = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("an event within 10 s")
        .expect("readable");
    assert!(
        next.is_some(),
        "the stream was cut off by the request timeout"
    );
}
