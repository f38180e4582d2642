//! Console sessions: stored by token hash, touched, deleted, and bounded per key and by age.

use std::collections::BTreeSet;

use chrono::{Duration, SubsecRound, Utc};
use infra::api_keys::Scope;
use infra::store::{ConsoleSessionBounds, StoredConsoleSession};

use super::Db;

fn session(hash: u8, key_id: &str, at: chrono::DateTime<Utc>) -> StoredConsoleSession {
    StoredConsoleSession {
        token_hash: vec![hash; 32],
        key_id: key_id.to_owned(),
        scopes: BTreeSet::from([Scope::AdminRead, Scope::AdminWrite]),
        bootstrap_check: (key_id == "bootstrap").then(|| vec![7; 32]),
        created_at: at,
        last_seen_at: at,
    }
}

pub async fn console_sessions_are_bounded_per_key_and_by_age(db: Db) {
    let start = Utc::now().trunc_subsecs(6) - Duration::hours(1);
    let keep_all = |now: chrono::DateTime<Utc>| ConsoleSessionBounds {
        idle_before: now - Duration::hours(10),
        created_before: now - Duration::hours(10),
        max_per_key: 3,
    };
    // Four sessions of one key, a minute apart: the oldest goes.
    for n in 0..4u8 {
        let at = start + Duration::minutes(i64::from(n));
        db.store
            .insert_console_session(&session(n, "k1", at), keep_all(at))
            .await
            .unwrap();
    }
    assert_eq!(db.store.console_session(&[0; 32]).await.unwrap(), None);
    for n in 1..4u8 {
        let at = start + Duration::minutes(i64::from(n));
        assert_eq!(
            db.store.console_session(&[n; 32]).await.unwrap(),
            Some(session(n, "k1", at))
        );
    }
    // Another key's sessions are its own; a bootstrap session keeps its check.
    let other = session(9, "bootstrap", start);
    db.store
        .insert_console_session(&other, keep_all(start))
        .await
        .unwrap();
    assert_eq!(
        db.store.console_session(&[9; 32]).await.unwrap(),
        Some(other)
    );

    // Touched, the idle bound spares it; the untouched ones of its age go at the next sign-in.
    let later = start + Duration::minutes(40);
    db.store
        .touch_console_session(&[3; 32], later)
        .await
        .unwrap();
    let bounds = ConsoleSessionBounds {
        idle_before: later - Duration::minutes(30),
        created_before: later - Duration::hours(12),
        max_per_key: 3,
    };
    db.store
        .insert_console_session(&session(5, "k2", later), bounds)
        .await
        .unwrap();
    for gone in [1u8, 2, 9] {
        assert_eq!(
            db.store.console_session(&[gone; 32]).await.unwrap(),
            None,
            "{gone}"
        );
    }
    let touched = db.store.console_session(&[3; 32]).await.unwrap().unwrap();
    assert_eq!(touched.last_seen_at, later);
    // The absolute bound holds however recently it was seen.
    let bounds = ConsoleSessionBounds {
        created_before: start + Duration::minutes(30),
        ..bounds
    };
    db.store
        .insert_console_session(&session(6, "k2", later), bounds)
        .await
        .unwrap();
    assert_eq!(db.store.console_session(&[3; 32]).await.unwrap(), None);

    assert!(db.store.delete_console_session(&[5; 32]).await.unwrap());
    assert!(!db.store.delete_console_session(&[5; 32]).await.unwrap());
    assert!(db.store.console_session(&[6; 32]).await.unwrap().is_some());
}
