//! Daily stats: actives over a window, and the day boundary of `IDENTITY_STATS_TIMEZONE`.

use chrono::{NaiveDate, TimeZone, Utc};
use infra::store::LoginRejection;
use projections::{spawn_runners, ProjectionError, ReadModels};

use super::scenario::{Scenario, APP_A, APP_B};
use super::{Db, CATCH_UP};
use testkit::both_backends;

both_backends!(
    Db:
    actives_over_a_window_count_each_user_once,
    a_day_starts_at_midnight_in_the_stats_zone,
    a_zone_change_rebuilds_the_stats_in_the_new_days,
    instances_in_two_zones_never_share_a_database,
);

const SHANGHAI: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

/// Logins of `(day, logins)`, all apps, from `first` to `last`.
async fn logins_by_day(models: &ReadModels, first: u32, last: u32) -> Vec<(NaiveDate, i64)> {
    models
        .daily_stats(None, day(first), day(last))
        .await
        .unwrap()
        .iter()
        .map(|s| (s.day, s.logins))
        .collect()
}

/// 15:00Z and 17:00Z on January 1st: 23:00 on the 1st and 01:00 on the 2nd in Shanghai.
fn evening_logins() -> Scenario {
    Scenario::logins(&[
        (
            1,
            APP_A,
            Utc.with_ymd_and_hms(2026, 1, 1, 15, 0, 0).unwrap(),
        ),
        (
            2,
            APP_A,
            Utc.with_ymd_and_hms(2026, 1, 1, 17, 0, 0).unwrap(),
        ),
    ])
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, d).unwrap()
}

/// Appends `scenario` and projects it with days starting in `zone`.
async fn project_in(db: &Db, scenario: &Scenario, zone: chrono_tz::Tz) -> ReadModels {
    let head = scenario.append_to(db.store.as_ref(), 50).await;
    let models = ReadModels::connect(&db.url, zone).await.unwrap();
    let runners = spawn_runners(models.clone(), db.store.clone());
    models.wait_for_catch_up(head, CATCH_UP).await.unwrap();
    runners.shutdown().await;
    models
}

/// One runner batch, once the new events are readable (on PostgreSQL, a transaction open
/// anywhere on the server may hold them back a moment): `Ok(false)` only if they never were.
async fn step(models: &ReadModels, db: &Db) -> Result<bool, ProjectionError> {
    for _ in 0..200 {
        let step = projections::run_one_batch(models, db.store.as_ref()).await;
        if !matches!(step, Ok(false)) {
            return step;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(false)
}

async fn actives_over_a_window_count_each_user_once(db: Db) {
    let at = |d: u32| Utc.with_ymd_and_hms(2026, 1, d, 10, 0, 0).unwrap();
    let scenario = Scenario::logins(&[
        (1, APP_A, at(1)),
        (1, APP_A, at(3)),
        (1, APP_A, at(3)),
        (2, APP_A, at(2)),
        (3, APP_B, at(3)),
        (1, APP_B, at(3)),
    ]);
    let models = project_in(&db, &scenario, chrono_tz::UTC).await;
    let actives = |appid: Option<&'static str>, last: u32, days: u32| {
        let models = models.clone();
        async move {
            models
                .active_users_over(appid, day(last), days)
                .await
                .unwrap()
        }
    };
    assert_eq!(actives(Some(APP_A), 3, 1).await, 1, "user 1, twice");
    assert_eq!(actives(Some(APP_A), 3, 2).await, 2, "users 1 and 2");
    assert_eq!(actives(Some(APP_A), 3, 30).await, 2);
    assert_eq!(actives(Some(APP_B), 3, 7).await, 2, "users 1 and 3");
    assert_eq!(
        actives(None, 3, 1).await,
        2,
        "user 1 in both apps counts once"
    );
    assert_eq!(actives(None, 3, 7).await, 3);
    assert_eq!(actives(None, 2, 1).await, 1);
    assert_eq!(actives(None, 4, 1).await, 0);
    assert_eq!(actives(None, 3, 0).await, 0, "an empty window");
    assert_eq!(models.stats_timezone(), chrono_tz::UTC);
}

async fn a_day_starts_at_midnight_in_the_stats_zone(db: Db) {
    let models = project_in(&db, &evening_logins(), SHANGHAI).await;
    assert_eq!(
        logins_by_day(&models, 1, 3).await,
        [(day(1), 1), (day(2), 1)],
        "17:00Z is already the 2nd in Shanghai"
    );
    assert_eq!(models.active_users_over(None, day(2), 1).await.unwrap(), 1);
    // A rebuild in the same zone gives the same days.
    let before = models.dump().await.unwrap();
    projections::rebuild(&models, db.store.clone(), Some("daily_stats"))
        .await
        .unwrap();
    assert_eq!(models.dump().await.unwrap(), before);
    assert_eq!(
        models
            .settle_stats_timezone(db.store.clone())
            .await
            .unwrap(),
        None
    );
}

async fn a_zone_change_rebuilds_the_stats_in_the_new_days(db: Db) {
    let in_utc = project_in(&db, &evening_logins(), chrono_tz::UTC).await;
    assert_eq!(logins_by_day(&in_utc, 1, 3).await, [(day(1), 2)]);
    // A refused login counted on the UTC day, before the change.
    let refused_at = Utc::now();
    db.store
        .record_rejection(
            &LoginRejection {
                appid: APP_A.into(),
                reason: "invalid_code".into(),
                client_ip: None,
                user_id: None,
                at: refused_at,
                day: day(1),
            },
            10,
        )
        .await
        .unwrap();
    let rejected = |models: ReadModels| async move {
        models.daily_stats(None, day(1), day(3)).await.unwrap()[0]
            .rejected_logins
            .clone()
    };
    assert_eq!(rejected(in_utc.clone()).await.len(), 1);

    let in_shanghai = ReadModels::connect(&db.url, SHANGHAI).await.unwrap();
    let before = in_shanghai
        .settle_stats_timezone(db.store.clone())
        .await
        .unwrap();
    assert_eq!(before.as_deref(), Some("UTC"), "rebuilt");
    assert_eq!(
        logins_by_day(&in_shanghai, 1, 3).await,
        [(day(1), 1), (day(2), 1)]
    );
    // Tallies made in the old zone are left out rather than mixed in.
    assert!(rejected(in_shanghai.clone()).await.is_empty());
    // Settled: a restart in the same zone rebuilds nothing.
    assert_eq!(
        in_shanghai
            .settle_stats_timezone(db.store.clone())
            .await
            .unwrap(),
        None
    );

    // A runner still counting in UTC stops instead of adding UTC days to Shanghai's.
    Scenario::logins(&[(
        3,
        APP_A,
        Utc.with_ymd_and_hms(2026, 1, 2, 20, 0, 0).unwrap(),
    )])
    .append_to(db.store.as_ref(), 50)
    .await;
    let refused = step(&in_utc, &db).await;
    assert!(
        matches!(refused, Err(ProjectionError::StatsZoneChanged { .. })),
        "{refused:?}"
    );
    assert!(step(&in_shanghai, &db).await.unwrap());
    assert_eq!(
        logins_by_day(&in_shanghai, 1, 3).await,
        [(day(1), 1), (day(2), 1), (day(3), 1)]
    );
}

async fn instances_in_two_zones_never_share_a_database(db: Db) {
    let first = ReadModels::connect(&db.url, chrono_tz::UTC).await.unwrap();
    assert_eq!(
        first.settle_stats_timezone(db.store.clone()).await.unwrap(),
        None
    );
    let second = ReadModels::connect(&db.url, SHANGHAI).await.unwrap();
    let refused = second.settle_stats_timezone(db.store.clone()).await;
    let Err(error) = refused else {
        panic!("a second zone was let in: {refused:?}");
    };
    assert!(matches!(error, ProjectionError::StatsZoneInUse { .. }));
    let message = error.to_string();
    assert!(
        message.contains("IDENTITY_STATS_TIMEZONE") && message.contains("UTC"),
        "{message}"
    );
    // Nor may it rebuild the stats under the first one.
    let rebuilt = projections::rebuild(&second, db.store.clone(), Some("daily_stats")).await;
    assert!(matches!(
        rebuilt,
        Err(ProjectionError::StatsZoneInUse { .. })
    ));
    // Once the first one has stopped (its runner withdraws it), the change goes through.
    spawn_runners(first, db.store.clone()).shutdown().await;
    assert_eq!(
        second
            .settle_stats_timezone(db.store.clone())
            .await
            .unwrap(),
        Some("UTC".to_owned())
    );
}
