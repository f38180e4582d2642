//! The projections, one suite for both backends: every test runs against a fresh SQLite file
//! and, when `IDENTITY_TEST_POSTGRES_URL` is set, a fresh PostgreSQL schema.

#![allow(clippy::unwrap_used)]

mod batches;
mod scenario;
mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Duration as Minutes, NaiveDate};
use projections::{
    rebuild, spawn_runners, AuditFilter, AuditRecord, LoginFilter, Page, PageRequest,
    ProjectionError, ReadModels, SessionFilter, UserFilter,
};
use scenario::{session, t0, user, Scenario, APP_A, APP_B, SEALED_REASON};

const CATCH_UP: Duration = Duration::from_secs(60);

use testkit::{both_backends, Backend, TestDb as Db};

/// The audit log's first page of `limit` entries matching `filter`.
async fn audit(models: &ReadModels, filter: AuditFilter, limit: u32) -> Page<AuditRecord> {
    models
        .audit(&filter, &PageRequest::first(limit))
        .await
        .unwrap()
}

/// The audit filter on `user` and `action`, where given.
fn audit_of(user: Option<uuid::Uuid>, action: Option<&str>) -> AuditFilter {
    AuditFilter {
        user_id: user,
        action: action.map(Into::into),
        ..Default::default()
    }
}

async fn read_models(db: &Db) -> ReadModels {
    ReadModels::connect(&db.url, chrono_tz::UTC).await.unwrap()
}

both_backends!(
    Db:
    read_models_follow_the_log,
    sessions_hold_the_open_ones,
    pages_walk_every_row_once,
    garbage_cursors_are_refused,
    new_events_wake_the_runners,
    rebuild_equals_the_live_models,
    queries_keep_working_during_a_rebuild,
    interrupted_catch_up_equals_an_uninterrupted_one,
    two_instances_apply_each_event_once,
    other_instances_are_woken,
);

/// Appends the scenario, runs the projections until they have it all, stops them.
async fn project(db: &Db, scenario: &Scenario) -> ReadModels {
    let head = scenario.append_to(db.store.as_ref(), 50).await;
    let models = read_models(db).await;
    let runners = spawn_runners(models.clone(), db.store.clone());
    models.wait_for_catch_up(head, CATCH_UP).await.unwrap();
    runners.shutdown().await;
    models
}

/// The erased user's logins still count, with no openid, client IP or device left.
async fn erased_logins_keep_nothing_personal(models: &ReadModels) {
    let logins = models
        .user_logins(user(12), &LoginFilter::default(), &PageRequest::first(100))
        .await
        .unwrap();
    assert!(
        !logins.items.is_empty(),
        "the erased user's logins still count"
    );
    for login in &logins.items {
        assert!(
            login.openid.is_none() && login.client_ip.is_none() && login.device.is_none(),
            "{login:?}"
        );
    }
    // Others keep theirs.
    let living = models
        .user_logins(user(0), &LoginFilter::default(), &PageRequest::first(100))
        .await
        .unwrap();
    assert!(living.items.iter().all(|l| l.openid.is_some()));
}

async fn read_models_follow_the_log(db: Db) {
    let scenario = Scenario::new(14, 3);
    let models = project(&db, &scenario).await;

    let u0 = models.user(user(0)).await.unwrap().unwrap();
    assert_eq!(u0.status, "active");
    assert_eq!(u0.unionid.as_deref(), Some("un0"));
    let accounts: Vec<_> = u0
        .accounts
        .iter()
        .map(|a| (a.appid.as_str(), a.openid.as_deref().unwrap()))
        .collect();
    assert_eq!(accounts, [(APP_A, "oA0"), (APP_B, "oB0")]);
    assert!(u0.last_login_at.unwrap() > u0.created_at);
    assert_eq!(
        models.user(user(4)).await.unwrap().unwrap().status,
        "blocked"
    );
    assert_eq!(
        models.user(user(9)).await.unwrap().unwrap().status,
        "active"
    );
    let erased = models.user(user(12)).await.unwrap().unwrap();
    assert_eq!(erased.status, "erased");
    assert!(erased.profile.is_none() && erased.phone_index.is_none());
    assert!(erased.accounts.is_empty() && erased.unionid.is_none());
    erased_logins_keep_nothing_personal(&models).await;
    let u6 = models.user(user(6)).await.unwrap().unwrap();
    // Each profile event carries the whole profile, sealed: the newest replaces the last.
    assert_eq!(
        u6.profile.as_ref().unwrap()["sealed"],
        serde_json::json!("sealed-again:6")
    );
    assert_eq!(
        u6.profile.as_ref().unwrap()["fields"],
        serde_json::json!(["avatar_url", "nickname"])
    );
    assert_eq!(u6.phone_index.as_deref(), Some("ph6"));
    assert!(models.user(uuid::Uuid::nil()).await.unwrap().is_none());

    let find = |filter: UserFilter| {
        let models = models.clone();
        async move {
            let page = models
                .find_users(&filter, &PageRequest::first(50))
                .await
                .unwrap();
            page.items.iter().map(|u| u.user_id).collect::<Vec<_>>()
        }
    };
    let by = |f: fn(&mut UserFilter)| {
        let mut filter = UserFilter::default();
        f(&mut filter);
        filter
    };
    // Openids and unionids are found through the claims (keyed hashes), which name the users.
    assert_eq!(
        find(by(|f| {
            f.appid = Some(APP_A.into());
            f.user_ids = Some(vec![user(3), user(6)])
        }))
        .await,
        [user(6), user(3)]
    );
    assert!(find(by(|f| f.user_ids = Some(Vec::new()))).await.is_empty());
    assert_eq!(
        find(by(|f| f.phone_index = Some("ph13".into()))).await,
        [user(13)]
    );
    assert_eq!(
        find(by(|f| f.status = Some("blocked".into()))).await,
        [user(4)]
    );
    let in_b = find(by(|f| f.appid = Some(APP_B.into()))).await;
    // User 12 was erased: their accounts are free again.
    assert_eq!(in_b, [user(9), user(6), user(3), user(0)]);
    assert_eq!(find(UserFilter::default()).await.len(), 14);

    let logins = models
        .user_logins(user(0), &LoginFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    let sessions: Vec<_> = logins.items.iter().map(|l| l.session_id.clone()).collect();
    assert_eq!(sessions, [2, 1, 0].map(|k| session(0, k).to_string()));
    assert!(logins.items[2].is_new_user && !logins.items[0].is_new_user);
    assert_eq!(logins.items[1].appid.as_deref(), Some(APP_B));
    assert_eq!(logins.items[0].device.as_deref(), Some("iPhone 15"));
    assert!(logins.next_cursor.is_none());
    let in_b = LoginFilter {
        appid: Some(APP_B.into()),
        ..Default::default()
    };
    let b_logins = models
        .logins(&in_b, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(
        b_logins.items.len(),
        5,
        "one B login for each of users 0, 3, 6, 9, 12"
    );

    let blocked = audit(&models, audit_of(Some(user(4)), Some("UserBlocked")), 10).await;
    assert_eq!(blocked.items.len(), 1);
    assert_eq!(blocked.items[0].actor, "admin:key1");
    assert_eq!(blocked.items[0].details["reason"], SEALED_REASON);
    let revoked = audit(&models, audit_of(Some(user(4)), Some("SessionRevoked")), 10).await;
    assert_eq!(
        revoked.items.len(),
        1,
        "session events are filed under their user"
    );
    assert_eq!(revoked.items[0].actor, "system");
    let future = audit(&models, audit_of(None, Some("FutureThing")), 10).await;
    assert_eq!(future.items.len(), 2, "users 5 and 11");
    assert_eq!(future.items[0].details["secret_field"], "[redacted]");
    assert_eq!(future.items[0].details["flag"], true);
    assert_eq!(future.items[0].target, user(11).to_string());
    let profile = audit(&models, audit_of(None, Some("ProfileUpdated")), 10).await;
    // Sealed personal data stays out of the audit log too (it is ciphertext, but still).
    assert!(!serde_json::to_string(&profile.items)
        .unwrap()
        .contains("sealed-again"));
    let by_admin = audit(
        &models,
        AuditFilter {
            actor: Some("admin:key1".into()),
            ..Default::default()
        },
        100,
    )
    .await;
    assert!(by_admin.items.iter().all(|a| a.actor == "admin:key1"));
    assert_eq!(
        by_admin.items.len(),
        4,
        "blocks of 4 and 9, unblock of 9, erasure of 12"
    );

    // Stats, against counts made from the scenario itself.
    let mut expected: BTreeMap<
        (String, NaiveDate),
        (i64, std::collections::BTreeSet<String>, i64),
    > = BTreeMap::new();
    for entry in &scenario.entries {
        let e = &entry.event;
        let key = (
            e.payload["appid"].as_str().unwrap_or_default().to_owned(),
            e.occurred_at.date_naive(),
        );
        match e.event_type.as_str() {
            "UserLoggedIn" => {
                let row = expected.entry(key).or_default();
                row.0 += 1;
                row.1
                    .insert(e.payload["user_id"].as_str().unwrap().to_owned());
            }
            "UserRegistered" => expected.entry(key).or_default().2 += 1,
            _ => {}
        }
    }
    let first = t0().date_naive();
    let stats = models
        .daily_stats(None, first, first + Minutes::days(30))
        .await
        .unwrap();
    let got: Vec<_> = stats
        .iter()
        .map(|s| {
            (
                (s.appid.clone(), s.day),
                (s.logins, s.active_users, s.new_users),
            )
        })
        .collect();
    let mut want: Vec<_> = expected
        .into_iter()
        .map(|(k, (logins, active, new))| (k, (logins, active.len() as i64, new)))
        .collect();
    want.sort_by(|a, b| (a.0 .1, &a.0 .0).cmp(&(b.0 .1, &b.0 .0)));
    assert_eq!(got, want);
    let only_b = models
        .daily_stats(Some(APP_B), first, first + Minutes::days(30))
        .await
        .unwrap();
    assert!(!only_b.is_empty() && only_b.iter().all(|s| s.appid == APP_B));

    let status = models.status().await.unwrap();
    assert_eq!(status.len(), projections::PROJECTIONS.len());
    assert!(
        status.iter().all(|s| s.lag == 0 && s.position == s.head),
        "{status:?}"
    );
}

async fn sessions_hold_the_open_ones(db: Db) {
    let scenario = Scenario::new(14, 3);
    let models = project(&db, &scenario).await;
    let everything = SessionFilter {
        started_after: None,
        created_since: t0() - Minutes::days(1),
        active_since: t0() - Minutes::days(1),
    };
    let page = PageRequest::first(50);
    let open = models
        .open_sessions(user(0), &everything, &page)
        .await
        .unwrap();
    let ids: Vec<_> = open.items.iter().map(|s| s.session_id).collect();
    assert_eq!(
        ids,
        [session(0, 2), session(0, 1), session(0, 0)],
        "newest first"
    );
    assert!(open.items.iter().all(|s| s.user_id == user(0)));
    assert_eq!(open.items[1].appid.as_deref(), Some(APP_B));
    assert!(open.items[1].refreshed_at.unwrap() > open.items[1].created_at);
    assert!(open.items[0].refreshed_at.is_none());
    assert_eq!(open.items[0].client_ip.as_deref(), Some("203.0.113.1"));
    // As the payload carries it (v1 events read upcast: the device is an object).
    assert_eq!(
        open.items[0].device.as_ref().unwrap()["user_agent"],
        "iPhone 15"
    );

    // Revoked and logged-out sessions are gone.
    let ids = models.session_ids_of(user(4)).await.unwrap();
    assert_eq!(ids, [session(4, 1), session(4, 2)]);
    let busy = Scenario::range(20..21, 5);
    let models = project(&db, &busy).await;
    let ids = models.session_ids_of(user(20)).await.unwrap();
    assert_eq!(
        ids,
        [
            session(20, 0),
            session(20, 1),
            session(20, 2),
            session(20, 4)
        ]
    );

    // Filters: begun after a position, created since, active since.
    let all = models
        .open_sessions(user(0), &everything, &page)
        .await
        .unwrap();
    let cut = SessionFilter {
        started_after: Some(all.items[1].position),
        ..everything
    };
    let after = models.open_sessions(user(0), &cut, &page).await.unwrap();
    assert_eq!(after.items.len(), 1);
    assert_eq!(after.items[0].session_id, session(0, 2));
    let recent = SessionFilter {
        created_since: all.items[0].created_at,
        ..everything
    };
    let recent = models.open_sessions(user(0), &recent, &page).await.unwrap();
    assert_eq!(recent.items.len(), 1);
    let active = SessionFilter {
        active_since: all.items[1].refreshed_at.unwrap(),
        ..everything
    };
    let active = models.open_sessions(user(0), &active, &page).await.unwrap();
    let ids: Vec<_> = active.items.iter().map(|s| s.session_id).collect();
    assert_eq!(
        ids,
        [session(0, 2), session(0, 1)],
        "refreshed counts as active"
    );

    // Erasure empties the client IP and device of the user's sessions.
    let erased = models
        .open_sessions(user(12), &everything, &page)
        .await
        .unwrap();
    assert_eq!(erased.items.len(), 3);
    assert!(erased
        .items
        .iter()
        .all(|s| s.client_ip.is_none() && s.device.is_none()));

    // Keyset pages.
    let first = models
        .open_sessions(user(0), &everything, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = models
        .open_sessions(
            user(0),
            &everything,
            &PageRequest {
                limit: 2,
                cursor: first.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].session_id, session(0, 0));
    assert!(rest.next_cursor.is_none());
}

async fn pages_walk_every_row_once(db: Db) {
    let scenario = Scenario::new(10, 9);
    let models = project(&db, &scenario).await;

    // Everyone's logins, 7 at a time, against a single big page.
    let all = models
        .logins(&LoginFilter::default(), &PageRequest::first(200))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 90);
    assert!(all
        .items
        .windows(2)
        .all(|w| (w[0].occurred_at, w[0].position) > (w[1].occurred_at, w[1].position)));
    let mut walked = Vec::new();
    let mut page = PageRequest::first(7);
    loop {
        let got = models.logins(&LoginFilter::default(), &page).await.unwrap();
        assert!(got.items.len() <= 7);
        walked.extend(got.items);
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(walked, all.items);

    // A user's logins in a time range.
    let from = t0() + Minutes::hours(2);
    let to = t0() + Minutes::hours(5);
    let range = LoginFilter {
        appid: None,
        from: Some(from),
        to: Some(to),
    };
    let mut walked = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = models.user_logins(user(1), &range, &page).await.unwrap();
        walked.extend(got.items);
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    let want: Vec<_> = all
        .items
        .iter()
        .filter(|l| l.user_id == user(1) && l.occurred_at >= from && l.occurred_at < to)
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(walked, want);

    // Users, 3 at a time; the audit log, 50 at a time.
    let mut users = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = models
            .find_users(&UserFilter::default(), &page)
            .await
            .unwrap();
        users.extend(got.items.into_iter().map(|u| u.user_id));
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(users, (0..10).rev().map(user).collect::<Vec<_>>());
    let mut audit = 0;
    let mut page = PageRequest::first(50);
    loop {
        let got = models.audit(&AuditFilter::default(), &page).await.unwrap();
        audit += got.items.len();
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(audit, scenario.entries.len());
    // Limits are clamped.
    let clamped = models
        .logins(&LoginFilter::default(), &PageRequest::first(100_000))
        .await
        .unwrap();
    assert_eq!(clamped.items.len(), 90);
    let clamped = models
        .audit(&AuditFilter::default(), &PageRequest::first(100_000))
        .await
        .unwrap();
    let max = projections::MAX_PAGE_LIMIT as usize;
    assert_eq!(clamped.items.len(), max.min(scenario.entries.len()));
    let one = models
        .audit(&AuditFilter::default(), &PageRequest::first(0))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
}

async fn garbage_cursors_are_refused(db: Db) {
    let models = read_models(&db).await;
    let login_cursor = {
        let scenario = Scenario::new(1, 3);
        project(&db, &scenario).await;
        models
            .logins(&LoginFilter::default(), &PageRequest::first(1))
            .await
            .unwrap()
            .next_cursor
            .unwrap()
    };
    for bad in ["garbage", "", "eyJ4IjoxfQ", &login_cursor] {
        let page = PageRequest {
            limit: 10,
            cursor: Some(bad.to_owned()),
        };
        let audit = models.audit(&AuditFilter::default(), &page).await;
        assert!(
            matches!(audit, Err(ProjectionError::InvalidCursor)),
            "{bad}: {audit:?}"
        );
        let users = models.find_users(&UserFilter::default(), &page).await;
        assert!(
            matches!(users, Err(ProjectionError::InvalidCursor)),
            "{bad}"
        );
    }
}

async fn new_events_wake_the_runners(db: Db) {
    let models = read_models(&db).await;
    let runners = spawn_runners(models.clone(), db.store.clone());
    let scenario = Scenario::new(3, 2);
    let first = Scenario::from_entries(&scenario.entries[..1]);
    let head = first.append_to(db.store.as_ref(), 1).await;
    models.wait_for_catch_up(head, CATCH_UP).await.unwrap();
    // Idle long enough for the fallback poll to slow down to its steady pace.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let second = Scenario::from_entries(&scenario.entries[1..2]);
    let head = second.append_to(db.store.as_ref(), 1).await;
    models.wait_for_catch_up(head, CATCH_UP).await.unwrap();
    let took = started.elapsed();
    if matches!(db.backend, Backend::Sqlite) {
        // PostgreSQL's readers also wait for other tests' transactions: no bound there.
        assert!(took < Duration::from_millis(700), "woke after {took:?}");
    }
    runners.shutdown().await;
}

async fn rebuild_equals_the_live_models(db: Db) {
    let scenario = Scenario::new(40, 4);
    let models = project(&db, &scenario).await;
    let live = models.dump().await.unwrap();
    assert!(
        live.iter().all(|(_, rows)| !rows.is_empty()),
        "every table has rows"
    );

    let status = rebuild(&models, db.store.clone(), None).await.unwrap();
    assert!(status.iter().all(|s| s.lag == 0), "{status:?}");
    assert_eq!(models.dump().await.unwrap(), live);
    erased_logins_keep_nothing_personal(&models).await;
    rebuild(&models, db.store.clone(), Some("audit_log"))
        .await
        .unwrap();
    assert_eq!(models.dump().await.unwrap(), live);

    // A reconnecting instance finds the rebuilt generation.
    let again = read_models(&db).await;
    assert_eq!(again.dump().await.unwrap(), live);

    let unknown = rebuild(&models, db.store.clone(), Some("nope")).await;
    assert!(matches!(
        unknown,
        Err(ProjectionError::UnknownProjection(_))
    ));
}

async fn queries_keep_working_during_a_rebuild(db: Db) {
    let scenario = Scenario::new(60, 5);
    let models = project(&db, &scenario).await;
    let runners = spawn_runners(models.clone(), db.store.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (models, stop) = (models.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let u = models.user(user(7)).await.unwrap().unwrap();
                assert_eq!(u.accounts.len(), 1);
                let logins = models
                    .user_logins(user(7), &LoginFilter::default(), &PageRequest::first(10))
                    .await
                    .unwrap();
                assert_eq!(logins.items.len(), 5);
                let audit = audit(&models, audit_of(Some(user(7)), None), 100).await;
                assert!(!audit.items.is_empty());
                reads += 1;
            }
            reads
        })
    };
    // Events keep arriving while the rebuild runs; the runners keep applying them.
    let more = Scenario::range(100..140, 2);
    let writer = {
        let store = db.store.clone();
        tokio::spawn(async move { more.append_to(store.as_ref(), 5).await })
    };
    rebuild(&models, db.store.clone(), None).await.unwrap();
    let head = writer.await.unwrap();
    models.wait_for_catch_up(head, CATCH_UP).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.unwrap();
    assert!(reads > 0);
    runners.shutdown().await;

    let live = models.dump().await.unwrap();
    rebuild(&models, db.store.clone(), None).await.unwrap();
    assert_eq!(
        models.dump().await.unwrap(),
        live,
        "what the runners applied meanwhile equals a fresh build"
    );
}

async fn interrupted_catch_up_equals_an_uninterrupted_one(db: Db) {
    let scenario = Scenario::new(400, 4);
    assert!(scenario.entries.len() > 3000);
    let head = scenario.append_to(db.store.as_ref(), 100).await;
    let models = read_models(&db).await;
    // Start and abort the runners at varying moments until they are through.
    let mut interruptions = 0;
    for round in 0.. {
        let runners = spawn_runners(models.clone(), db.store.clone());
        tokio::time::sleep(Duration::from_millis(5 + (round % 10) * 15)).await;
        drop(runners);
        interruptions += 1;
        let status = models.status().await.unwrap();
        if status.iter().all(|s| s.position >= head) || round > 300 {
            break;
        }
    }
    eprintln!(
        "after {interruptions} interruptions: {:?}",
        models.status().await.unwrap()
    );
    let runners = spawn_runners(models.clone(), db.store.clone());
    models.wait_for_catch_up(head, CATCH_UP).await.unwrap();
    runners.shutdown().await;
    assert!(interruptions > 1);

    let other = db.another().await;
    let started = Instant::now();
    let uninterrupted = project(&other, &scenario).await;
    eprintln!(
        "{} events appended and projected in {:?}",
        scenario.entries.len(),
        started.elapsed()
    );
    assert_eq!(
        models.dump().await.unwrap(),
        uninterrupted.dump().await.unwrap()
    );
}

async fn two_instances_apply_each_event_once(db: Db) {
    let scenario = Scenario::new(150, 4);
    let head = scenario.append_to(db.store.as_ref(), 100).await;
    let (one, two) = (read_models(&db).await, read_models(&db).await);
    let first = spawn_runners(one.clone(), db.store.clone());
    let second = spawn_runners(two.clone(), db.store.clone());
    one.wait_for_catch_up(head, CATCH_UP).await.unwrap();
    first.shutdown().await;
    second.shutdown().await;

    let other = db.another().await;
    let alone = project(&other, &scenario).await;
    assert_eq!(one.dump().await.unwrap(), alone.dump().await.unwrap());
}

/// An append on one instance wakes the others' readers (PostgreSQL: through NOTIFY); on
/// SQLite there is one instance, and its own appends wake it.
async fn other_instances_are_woken(db: Db) {
    let other = infra::store::connect(&db.url).await.unwrap();
    let mut woken = match db.backend {
        Backend::Postgres => other.appended(),
        Backend::Sqlite => db.store.appended(),
    };
    // Give the listener a moment to subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    woken.borrow_and_update();
    let head = Scenario::new(1, 1).append_to(db.store.as_ref(), 10).await;
    tokio::time::timeout(Duration::from_secs(5), woken.changed())
        .await
        .expect("woken within 5 s")
        .unwrap();
    if matches!(db.backend, Backend::Sqlite) {
        assert_eq!(*woken.borrow(), head);
    }
}
