//! The NATS JetStream relay against a real NATS server: every event of the log reaches the
//! stream exactly once, in position order, through concurrent writers, restarts between
//! publish and checkpoint, rival instances and a NATS outage.
//!
//! NATS comes from `IDENTITY_TEST_NATS_URL` (skipped without it, failed under `CI=true`);
//! the outage test starts its own `nats-server`. Each test uses its own stream and subject
//! prefix, and its own database (SQLite file or PostgreSQL schema).

// A failed unwrap is a failed test; the helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use infra::relay::{self, RelayConfig};
use infra::store::{RecordedEvent, Store};
use support::*;

const PATIENCE: Duration = Duration::from_secs(60);

/// JetStream holds exactly the log, and the relay's checkpoint reaches its end.
async fn assert_relayed(
    store: &dyn Store,
    nats: &str,
    config: &RelayConfig,
    log: &[RecordedEvent],
) {
    let js = jetstream(nats).await;
    let received = read_stream(&js, &config.stream, log.len(), PATIENCE).await;
    assert_exactly_the_log(&received, log, config);
    let end = log.last().expect("a log").position;
    wait_for_checkpoint(store, &config.stream, end, PATIENCE, None).await;
}

use testkit::{both_backends, Backend, Fixture};

both_backends!(
    RelayDb:
    concurrent_writers_reach_the_stream_once_in_order,
    a_restart_between_publish_and_checkpoint_publishes_nothing_twice,
);

async fn concurrent_writers_reach_the_stream_once_in_order(RelayDb { store, url, nats }: RelayDb) {
    let config = unique_config(&nats);
    write_concurrently(&store, 4, 400, 7).await;
    let relay = relay::spawn_relay(store.clone(), config.clone());
    // Catch-up above, live below, while the relay runs.
    write_concurrently(&store, 8, 3000, 10).await;

    let js = jetstream(&nats).await;
    let log = whole_log(store.as_ref(), &url).await;
    assert_eq!(log.len(), 3400);
    assert_relayed(store.as_ref(), &nats, &config, &log).await;
    let last = log.last().unwrap().position;
    assert_eq!(relay.health().borrow().published, last);

    // The stream the relay made: our subjects, file storage, a duplicate window.
    let info = js
        .get_stream(&config.stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(
        info.config.subjects,
        [format!("{}.>", config.subject_prefix)]
    );
    assert_eq!(info.config.duplicate_window, config.duplicate_window);
    relay.shutdown().await;
    delete_stream(&nats, &config).await;
}

/// A relay that published but died before its checkpoint: the next one republishes nothing
/// (it resumes after the stream's last message), and a repeat that does get through is
/// dropped by JetStream for its `Nats-Msg-Id`.
async fn a_restart_between_publish_and_checkpoint_publishes_nothing_twice(
    RelayDb { store, url, nats }: RelayDb,
) {
    let config = unique_config(&nats);
    write_concurrently(&store, 2, 2500, 50).await;
    let relay = relay::spawn_relay(store.clone(), config.clone());
    let log = whole_log(store.as_ref(), &url).await;
    let last = log.last().unwrap().position;
    wait_for_checkpoint(store.as_ref(), &config.stream, last, PATIENCE, None).await;
    relay.shutdown().await;

    // Move the checkpoint back, mid-batch: as if the last batches were published and the
    // relay died before checkpointing them.
    let lease = store.try_lock_relay(&config.stream).await.unwrap().unwrap();
    assert_eq!(lease.position(), last);
    assert!(lease.advance(log[700].position).await.unwrap());

    let relay = relay::spawn_relay(store.clone(), config.clone());
    write_concurrently(&store, 2, 500, 25).await;
    let log = whole_log(store.as_ref(), &url).await;
    assert_relayed(store.as_ref(), &nats, &config, &log).await;
    relay.shutdown().await;

    // The second guard: the same event id again is acknowledged as a duplicate, not stored.
    let js = jetstream(&nats).await;
    let event = &log[10];
    let ack = js
        .send_publish(
            relay::subject(&config.subject_prefix, event),
            PublishMessage::build()
                .payload("repeat".into())
                .message_id(event.event_id.to_string()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate);
    let mut stream = js.get_stream(&config.stream).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        log.len() as u64
    );
    delete_stream(&nats, &config).await;
}

/// Two instances on one PostgreSQL database, each with its relay: one publishes at a time,
/// and the stream still holds every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_publish_each_event_once() {
    let Some(RelayDb { store, url, nats }) = RelayDb::start(Backend::Postgres).await else {
        return;
    };
    let other = infra::store::connect(&url).await.unwrap();
    let config = unique_config(&nats);
    let first = relay::spawn_relay(store.clone(), config.clone());
    let second = relay::spawn_relay(other.clone(), config.clone());
    let writers = {
        let (a, b) = (store.clone(), other.clone());
        tokio::spawn(async move {
            tokio::join!(
                write_concurrently(&a, 4, 2500, 10),
                write_concurrently(&b, 4, 2500, 10)
            )
        })
    };
    // Stop one relay halfway: the other takes over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.shutdown().await;
    writers.await.unwrap();

    let log = whole_log(store.as_ref(), &url).await;
    assert_eq!(log.len(), 5000);
    let end = log.last().unwrap().position;
    let stall = Stall {
        url: &url,
        relays: &[&second],
    };
    wait_for_checkpoint(store.as_ref(), &config.stream, end, PATIENCE, Some(stall)).await;
    let js = jetstream(&nats).await;
    let received = read_stream(&js, &config.stream, log.len(), PATIENCE).await;
    assert_exactly_the_log(&received, &log, &config);
    second.shutdown().await;
    delete_stream(&nats, &config).await;
}

/// Issue 5, item 4 (relay half): 16 writers append 100,000 events on PostgreSQL while the
/// relay runs; JetStream receives each exactly once, in position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_thousand_events_from_sixteen_writers() {
    let Some(RelayDb { store, url, nats }) = RelayDb::start(Backend::Postgres).await else {
        return;
    };
    let config = unique_config(&nats);
    let started = Instant::now();
    let relay = relay::spawn_relay(store.clone(), config.clone());
    write_concurrently(&store, 16, 100_000, 50).await;
    let written = started.elapsed();
    let log = whole_log(store.as_ref(), &url).await;
    assert_eq!(log.len(), 100_000);
    let js = jetstream(&nats).await;
    let received = read_stream(&js, &config.stream, log.len(), Duration::from_secs(300)).await;
    let relayed = started.elapsed();
    assert_exactly_the_log(&received, &log, &config);
    eprintln!("100,000 events: written in {written:?}, all in JetStream after {relayed:?}");
    relay.shutdown().await;
    delete_stream(&nats, &config).await;
}

/// NATS goes away for a while (killed, not stopped) while events keep coming, then returns
/// on the same port and store: the stream ends with every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_outage_delays_events_but_loses_none() {
    let Some(mut server) = NatsServer::start().await else {
        return;
    };
    let (store, url) = match testkit::fresh_store(testkit::Backend::Postgres).await {
        Some(pg) => pg,
        None => testkit::fresh_store(testkit::Backend::Sqlite)
            .await
            .expect("a SQLite store"),
    };
    let config = RelayConfig {
        nats_url: server.url(),
        ..unique_config(&server.url())
    };
    let relay = relay::spawn_relay(store.clone(), config.clone());
    write_concurrently(&store, 4, 1000, 10).await;
    let js = jetstream(&server.url()).await;
    read_stream(&js, &config.stream, 1000, PATIENCE).await;

    // Kill it while writers are busy, so batches are cut short mid-publish.
    let writers = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                write_concurrently(&store, 4, 100, 5).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    // Down until the relay has failed (its publishes time out) and retried at least once.
    let mut health = relay.health();
    tokio::time::timeout(PATIENCE, health.wait_for(|h| h.failures >= 2))
        .await
        .expect("the relay notices the outage")
        .unwrap();
    server.restart().await;
    writers.await.unwrap();

    let log = whole_log(store.as_ref(), &url).await;
    assert_eq!(log.len(), 3000);
    assert_relayed(store.as_ref(), &server.url(), &config, &log).await;
    assert_eq!(relay.health().borrow().failures, 0);
    relay.shutdown().await;
}

/// A database outage (a private PostgreSQL cluster stopped for 3 s): the relay fails while it
/// is away and resumes by itself once it is back, and the stream still holds each event once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_delays_events_but_loses_none() {
    let Some(nats) = nats_url().await else {
        return;
    };
    let Some(cluster) = testkit::PgCluster::start().await else {
        return;
    };
    let url = cluster.url();
    // The service's settings: a request waits 1 s for a connection.
    let store = infra::store::connect_with(&url, &infra::sql::PoolSettings::REQUESTS)
        .await
        .unwrap();
    let config = unique_config(&nats);
    let relay = relay::spawn_relay(store.clone(), config.clone());
    write_concurrently(&store, 4, 500, 10).await;
    let js = jetstream(&nats).await;
    read_stream(&js, &config.stream, 500, PATIENCE).await;

    cluster.stop().await;
    let mut health = relay.health();
    tokio::time::timeout(PATIENCE, health.wait_for(|h| h.failures >= 1))
        .await
        .expect("the relay notices the outage")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_again().await;
    let back = Instant::now();
    write_concurrently(&store, 4, 500, 10).await;

    let log = whole_log(store.as_ref(), &url).await;
    assert_eq!(log.len(), 1000);
    assert_relayed(store.as_ref(), &nats, &config, &log).await;
    let resumed_in = back.elapsed();
    assert_eq!(relay.health().borrow().failures, 0);
    eprintln!("the relay resumed after a database outage: all 1000 events relayed {resumed_in:.1?} after the server was back");
    relay.shutdown().await;
    delete_stream(&nats, &config).await;
}
