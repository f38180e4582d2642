//! Open event streams answer to their API key: a revoked key's streams end (on every
//! instance: keys live in the database), a key holds a few streams at most, and streams are
//! exempt from the request timeout.

use std::time::{Duration, Instant};

use identity_tests::{
    assert_mentions, assert_more_arrives, assert_problem, both_backends, until_ended, World, APP_A,
};

both_backends!(
    World:
    a_revoked_keys_open_stream_ends_within_10_s,
    open_streams_per_key_are_capped,
    the_stream_outlives_the_request_timeout,
);

async fn a_revoked_keys_open_stream_ends_within_10_s(world: World) {
    let key = world.api_key("events:read").await;
    let other_key = world.api_key("events:read").await;
    let second = world.spawn_instance(|_| {}).await;
    let mut on_first = world.open_event_stream(&world.app.base, &key).await;
    let mut on_second = world.open_event_stream(&second.base, &key).await;
    let mut unrelated = world.open_event_stream(&second.base, &other_key).await;

    world.revoke_api_key(&key).await;
    until_ended(&mut on_first, Duration::from_secs(10)).await;
    until_ended(&mut on_second, Duration::from_secs(10)).await;

    // Other keys' streams go on: a new event still arrives on them.
    world.login(APP_A, "alice").await;
    assert_more_arrives(&mut unrelated, "the unrelated stream ended").await;
    let refused = world.get_as(&key, "/v1/events/stream").await;
    assert_problem(refused, 401, "unauthorized").await;
}

async fn open_streams_per_key_are_capped(world: World) {
    let app = world.spawn_instance(|c| c.max_streams_per_key = 2).await;
    let key = world.api_key("events:read").await;
    let first = world.open_event_stream(&app.base, &key).await;
    let _second = world.open_event_stream(&app.base, &key).await;
    let third = world.event_stream_at(&app.base, &key).await;
    assert!(third.headers().contains_key("retry-after"));
    let problem = assert_problem(third, 429, "rate_limited").await;
    assert_mentions(&problem, "detail", "IDENTITY_MAX_STREAMS_PER_KEY");
    // Another key has slots of its own.
    let other = world.api_key("events:read").await;
    let _other = world.open_event_stream(&app.base, &other).await;

    // A closed stream frees its slot (noticed at the next write to it: an event).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        world.login(APP_A, "bob").await;
        let again = world.event_stream_at(&app.base, &key).await;
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
    let mut stream = world.open_event_stream(&app.base, &key).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    world.login(APP_A, "carol").await;
    assert_more_arrives(&mut stream, "the stream was cut off by the request timeout").await;
}
