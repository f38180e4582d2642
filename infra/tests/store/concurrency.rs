//! Many writers at once: what must hold however their transactions interleave.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use domain::{Claim, StreamId};
use infra::store::{
    self, AppendBatch, AppendError, ExpectedVersion, RecordedEvent, Store, StoredSigningKey,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use testkit::Backend;
use tokio::sync::{watch, Barrier};

use super::{account, event, load, new_user, one, stream, visible_log, Db};

pub async fn only_the_first_signing_key_is_kept(db: Db) {
    assert!(db.store.signing_keys().await.unwrap().is_empty());
    let start = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (store, start) = (db.store.clone(), start.clone());
            tokio::spawn(async move {
                let key = StoredSigningKey {
                    kid: format!("kid-{i}"),
                    sealed_private_key: vec![i; 32],
                    created_at: Utc::now().trunc_subsecs(6),
                    activates_at: None,
                    retire_after: None,
                    retired_at: None,
                };
                start.wait().await;
                store.insert_first_signing_key(key).await.unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.unwrap());
    }
    let stored = db.store.signing_keys().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        results.iter().all(|keys| *keys == stored),
        "every racer sees the winner"
    );
    let winner = &stored[0];
    assert_eq!(
        winner.sealed_private_key,
        vec![winner.kid[4..].parse::<u8>().unwrap(); 32]
    );
}

/// Writers append concurrently (own streams, contested streams with retries, several streams
/// at once) while a reader polls `read_all`. The reader must see every committed event exactly
/// once, in strictly increasing position order: a position passed over is never revisited.
///
/// On PostgreSQL the writers go through four stores, as four service instances would: one
/// store's append writer sends one call at a time, so its appends commit in position order
/// anyway; several stores' appends commit in any order, which is what the read rule is for.
pub async fn concurrent_readers_see_every_event_once_in_order(db: Db) {
    const WRITERS: u64 = 8;
    const APPENDS: usize = 100;
    let mut instances = vec![db.store.clone()];
    if db.backend == Backend::Postgres {
        for _ in 1..4 {
            instances.push(store::connect(&db.url).await.unwrap());
        }
    }
    let (total_tx, total_rx) = watch::channel(None::<usize>);
    let reader = tokio::spawn(read_until_total(db.store.clone(), total_rx));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let instance = instances[w as usize % instances.len()].clone();
            tokio::spawn(write_randomly(instance, w, APPENDS))
        })
        .collect();
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    total_tx.send(Some(written.len())).unwrap();
    let seen = reader.await.unwrap();

    written.sort_by_key(|e| e.position);
    assert_eq!(seen.len(), written.len());
    assert!(
        seen == written,
        "the reader saw other events than the writers wrote"
    );
    // Every stream is numbered 1..=n without gaps.
    let mut versions: HashMap<&StreamId, Vec<i64>> = HashMap::new();
    for e in &written {
        versions
            .entry(&e.stream_id)
            .or_default()
            .push(e.stream_version);
    }
    for (s, mut v) in versions {
        v.sort_unstable();
        assert!(v.iter().copied().eq(1..=v.len() as i64), "{s}: {v:?}");
    }
}

async fn read_until_total(
    store: Arc<dyn Store>,
    total: watch::Receiver<Option<usize>>,
) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 50).await.unwrap();
        if page.is_empty() {
            let total = *total.borrow();
            if let Some(total) = total {
                if seen.len() >= total {
                    return seen;
                }
                // Fail fast on an event passed over: one visible now at or below the reader's
                // position that it did not see (it never reads there again). Not "everything
                // is visible yet the page was empty": a transaction elsewhere on the server
                // can hold the xmin back for the page read and end just before this one.
                let seen_at: HashSet<i64> = seen.iter().map(|e| e.position).collect();
                let passed_over = store
                    .read_all(0, u32::MAX)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.position <= after && !seen_at.contains(&e.position))
                    .count();
                assert!(
                    passed_over == 0,
                    "the reader passed over {passed_over} of {total} events"
                );
            }
            assert!(
                Instant::now() < deadline,
                "the reader saw {} events and waits for more",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for e in page {
            assert!(e.position > after, "position {} after {after}", e.position);
            after = e.position;
            seen.push(e);
        }
    }
}

/// `appends` successful appends of 1 to 3 events; returns what the store recorded.
async fn write_randomly(store: Arc<dyn Store>, writer: u64, appends: usize) -> Vec<RecordedEvent> {
    let mut rng = StdRng::seed_from_u64(writer);
    let own = stream(&format!("writer-{writer}"));
    let shared = [stream("shared-a"), stream("shared-b")];
    let mut known: HashMap<StreamId, i64> = HashMap::new();
    let mut recorded = Vec::new();
    for i in 0..appends {
        let plan: Vec<(StreamId, usize)> = match rng.gen_range(0..4) {
            0 => vec![(own.clone(), rng.gen_range(1..=3))],
            1 => vec![(shared[rng.gen_range(0..2)].clone(), rng.gen_range(1..=2))],
            2 => vec![(shared[1].clone(), 1), (shared[0].clone(), 1)],
            _ => vec![(stream("app-any"), 1), (own.clone(), rng.gen_range(1..=2))],
        };
        for attempt in 0.. {
            assert!(attempt < 1000, "writer {writer} starved");
            let mut batch = AppendBatch::default();
            for (s, n) in &plan {
                let expected = if s.as_str() == "app-any" {
                    ExpectedVersion::Any
                } else {
                    ExpectedVersion::after(known.get(s).copied().unwrap_or(0) as usize)
                };
                let events = (0..*n)
                    .map(|k| event("Written", json!({"writer": writer, "append": i, "k": k})))
                    .collect();
                batch = batch.stream(s.clone(), expected, events);
            }
            match store.append(batch).await {
                Ok(events) => {
                    for e in &events {
                        known.insert(e.stream_id.clone(), e.stream_version);
                    }
                    recorded.extend(events);
                    break;
                }
                Err(AppendError::VersionConflict(_)) => {
                    for (s, _) in &plan {
                        known.insert(s.clone(), store.load_stream(s).await.unwrap().len() as i64);
                    }
                }
                Err(e) => panic!("writer {writer}: {e:?}"),
            }
        }
    }
    recorded
}

pub async fn one_of_many_rival_claims_wins(db: Db) {
    let claim = account("o-contested");
    let start = Arc::new(Barrier::new(24));
    let rivals: Vec<_> = (0..24)
        .map(|_| {
            let (store, start, claim) = (db.store.clone(), start.clone(), claim.clone());
            tokio::spawn(async move {
                let user = new_user();
                let batch = one(
                    &user.stream(),
                    ExpectedVersion::NoStream,
                    vec![event("UserRegistered", json!({}))],
                );
                start.wait().await;
                (user, store.append(batch.claim(claim, user)).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for rival in rivals {
        match rival.await.unwrap() {
            (user, Ok(_)) => winners.push(user),
            (
                user,
                Err(AppendError::ClaimTaken {
                    kind: Claim::WECHAT_ACCOUNT,
                }),
            ) => losers.push(user),
            (_, Err(e)) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(db.store.find_claim(&claim).await.unwrap(), Some(winners[0]));
    for loser in losers {
        assert!(load(&db, &loser.stream()).await.is_empty());
    }
    let log = visible_log(&*db.store, 1).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].stream_id, winners[0].stream());
}
