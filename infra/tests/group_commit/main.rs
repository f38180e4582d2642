//! Appends committed together (group commit: SQLite's writer, PostgreSQL's append writer):
//! every append gets its own answer, a refused one takes none of its neighbours with it, and
//! readers see each committed event once, in order.
//!
//! The PostgreSQL-only tests hold a call in flight with the position reservation's advisory
//! lock taken from another connection, so what queues behind it is known without timing
//! anything (a row lock would refuse its batch after the call's 200 ms `lock_timeout`).

// A failed unwrap is a failed test; the helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use domain::{AppId, Claim, OpenId, StreamId, UserId};
use infra::crypto::MasterKey;
use infra::personal_data::LookupIndex;
use infra::store::{
    AppendBatch, AppendError, ClaimKey, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
};
use testkit::{both_backends, TestDb as Db};
use tokio::sync::Barrier;
use uuid::Uuid;

mod held;
mod listener;
mod outage;

/// The tests of this binary one at a time: the held tests take the position reservation's
/// advisory lock, which is one for the whole database (migration 0001), so another test's
/// calls would wait behind it and be taken for the call in flight.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

both_backends!(
    Db:
    concurrent_appends_each_get_their_own_answer,
    appends_that_all_commit_leave_no_gap,
);

fn event(event_type: &str) -> NewEvent {
    testkit::bare_event(event_type)
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| event(&format!("E{i}"))).collect()
}

fn stream(name: &str) -> StreamId {
    StreamId::from_stored(name.to_owned())
}

fn new_user() -> UserId {
    UserId::from_uuid(Uuid::now_v7())
}

fn one(stream_id: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch::default().stream(stream_id.clone(), expected, events)
}

static INDEX: LazyLock<LookupIndex> = LazyLock::new(|| LookupIndex::new(&MasterKey::generate()));

fn account(openid: &str) -> ClaimKey {
    INDEX.claim(&Claim::WeChatAccount {
        appid: AppId::parse("wx0123456789abcdef").unwrap(),
        openid: OpenId::parse(openid).unwrap(),
    })
}

/// The whole log once `count` events are visible (on PostgreSQL a commit becomes readable only
/// once every older transaction on the server has ended, other tests' too).
async fn visible_log(store: &dyn EventStore, count: usize) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = store.read_all(0, 10_000).await.unwrap();
        if log.len() >= count {
            return log;
        }
        assert!(Instant::now() < deadline, "{} of {count} events", log.len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every appended event is read back once, in position order, and nothing else is.
async fn log_is_exactly(store: &dyn EventStore, appended: &[Vec<RecordedEvent>]) {
    let mut expected: Vec<RecordedEvent> = appended.iter().flatten().cloned().collect();
    expected.sort_by_key(|e| e.position);
    let log = visible_log(store, expected.len()).await;
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(log, expected);
}

/// Free appends, rivals for one stream and rivals for one claim, all at once: the free ones
/// all commit, one rival of each kind wins and the others are told why.
async fn concurrent_appends_each_get_their_own_answer(db: Db) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    const FREE: usize = 24;
    const RIVALS: usize = 8;
    let start = Arc::new(Barrier::new(FREE + 2 * RIVALS));
    let spawn = |batch: AppendBatch| {
        let (store, start) = (db.store.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            store.append(batch).await
        })
    };
    let free: Vec<_> = (0..FREE)
        .map(|i| {
            spawn(one(
                &stream(&format!("free-{i}")),
                ExpectedVersion::NoStream,
                events(2),
            ))
        })
        .collect();
    let contested = stream("contested");
    let stream_rivals: Vec<_> = (0..RIVALS)
        .map(|_| spawn(one(&contested, ExpectedVersion::NoStream, events(1))))
        .collect();
    let wanted = account("o-wanted");
    let claim_rivals: Vec<_> = (0..RIVALS)
        .map(|i| {
            let rival = stream(&format!("claimant-{i}"));
            spawn(
                one(&rival, ExpectedVersion::NoStream, events(1)).claim(wanted.clone(), new_user()),
            )
        })
        .collect();

    let mut committed = Vec::new();
    for append in free {
        let written = append.await.unwrap().unwrap();
        assert_eq!(
            written.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
            [1, 2]
        );
        committed.push(written);
    }
    let (mut won, mut lost) = (0, 0);
    for append in stream_rivals {
        match append.await.unwrap() {
            Ok(written) => {
                won += 1;
                committed.push(written);
            }
            Err(AppendError::VersionConflict(s)) if s == contested => lost += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((won, lost), (1, RIVALS - 1));
    let (mut won, mut lost) = (0, 0);
    for append in claim_rivals {
        match append.await.unwrap() {
            Ok(written) => {
                won += 1;
                committed.push(written);
            }
            Err(AppendError::ClaimTaken { kind }) if kind == wanted.kind => lost += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((won, lost), (1, RIVALS - 1));
    log_is_exactly(db.store.as_ref(), &committed).await;
}

/// Concurrent appends that all commit take every position from 1 on: grouping them leaves no
/// hole in the log.
async fn appends_that_all_commit_leave_no_gap(db: Db) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    const APPENDS: usize = 32;
    let start = Arc::new(Barrier::new(APPENDS));
    let appends: Vec<_> = (0..APPENDS)
        .map(|i| {
            let (store, start) = (db.store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let own = stream(&format!("gapless-{i}"));
                store
                    .append(one(&own, ExpectedVersion::NoStream, events(1 + i % 3)))
                    .await
            })
        })
        .collect();
    let mut committed = Vec::new();
    for append in appends {
        committed.push(append.await.unwrap().unwrap());
    }
    let mut positions: Vec<i64> = committed.iter().flatten().map(|e| e.position).collect();
    positions.sort_unstable();
    let count = positions.len() as i64;
    assert_eq!(positions, (1..=count).collect::<Vec<_>>());
    log_is_exactly(db.store.as_ref(), &committed).await;
}
