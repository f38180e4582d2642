//! Issue 11: attempt counters (the cap on decrypting WeChat's user data) and the tallies of
//! refused logins (bounded, retention-limited, erasable).

use chrono::{Days, TimeZone, Utc};
use domain::UserId;
use infra::database_url::{Backend, DatabaseUrl};
use infra::store::{LoginRejection, FOLDED_IP};
use uuid::Uuid;

use super::Db;

const DAY: i64 = 86_400;

pub async fn attempts_are_counted_per_window_and_given_back(db: Db) {
    let window = 1_700_000_000 / DAY * DAY;
    let store = &db.store;
    assert_eq!(store.count_attempt("user:a", window).await.unwrap(), 1);
    assert_eq!(store.count_attempt("user:a", window).await.unwrap(), 2);
    assert_eq!(store.count_attempt("key:b", window).await.unwrap(), 1);
    store.uncount_attempt("user:a", window).await.unwrap();
    assert_eq!(store.count_attempt("user:a", window).await.unwrap(), 2);
    // Giving back never goes below zero, and never touches another window's count.
    for _ in 0..3 {
        store.uncount_attempt("key:b", window).await.unwrap();
    }
    assert_eq!(store.count_attempt("key:b", window).await.unwrap(), 1);
    store.uncount_attempt("user:a", window - DAY).await.unwrap();
    // A new window starts again from one, and forgets the old one's rows.
    assert_eq!(
        store.count_attempt("user:a", window + DAY).await.unwrap(),
        1
    );
    assert_eq!(store.count_attempt("key:b", window + DAY).await.unwrap(), 1);
    assert_eq!(
        store.count_attempt("user:a", window + DAY).await.unwrap(),
        2
    );
}

fn rejection(ip: Option<&str>, user: Option<UserId>, day: u64) -> LoginRejection {
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
    let at = base.checked_add_days(Days::new(day)).unwrap();
    LoginRejection {
        appid: "wx0000000000000001".into(),
        reason: if user.is_some() {
            "blocked"
        } else {
            "invalid_code"
        }
        .into(),
        client_ip: ip.map(str::to_owned),
        user_id: user,
        at,
        day: at.date_naive(),
    }
}

/// Records the rejection `rejection(ip, user, day)` with at most `max_rows` rows an app's day.
async fn record(db: &Db, ip: Option<&str>, user: Option<UserId>, day: u64, max_rows: u32) {
    db.store
        .record_rejection(&rejection(ip, user, day), max_rows)
        .await
        .unwrap();
}

/// The user of every tally (empty where none), in tally order.
async fn tallied_users(url: &str) -> Vec<String> {
    let tallies = tallies(url).await;
    tallies.into_iter().map(|(_, _, user, _)| user).collect()
}

/// `(day, client_ip, user_id, attempts)` of every tally, in that order.
async fn tallies(url: &str) -> Vec<(String, String, String, i64)> {
    let sql = "SELECT day, client_ip, user_id, attempts FROM login_rejections";
    let backend = DatabaseUrl::parse(url).unwrap().backend();
    let mut rows: Vec<(String, String, String, i64)> = if backend == Backend::Sqlite {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    };
    // Sorted here: a database's collation may order '*' elsewhere.
    rows.sort();
    rows
}

pub async fn rejections_are_tallied_bounded_and_forgotten(db: Db) {
    let store = &db.store;
    // The same address the same day: one row, counted.
    for _ in 0..3 {
        record(&db, Some("10.0.0.1"), None, 0, 3).await;
    }
    // Many addresses: at most 3 rows for the app's day, the rest folded into one.
    for i in 2..=20 {
        let ip = format!("10.0.0.{i}");
        record(&db, Some(&ip), None, 0, 3).await;
    }
    // An address already tallied keeps being counted under its own row.
    record(&db, Some("10.0.0.2"), None, 0, 3).await;
    let day0 = tallies(&db.url).await;
    assert_eq!(
        day0.iter()
            .map(|(_, ip, _, n)| (ip.as_str(), *n))
            .collect::<Vec<_>>(),
        [
            (FOLDED_IP, 17),
            ("10.0.0.1", 3),
            ("10.0.0.2", 2),
            ("10.0.0.3", 1)
        ]
    );

    // A blocked user's refusal names the user; erasure deletes exactly those rows.
    let blocked = UserId::from_uuid(Uuid::now_v7());
    let other = UserId::from_uuid(Uuid::now_v7());
    for user in [blocked, other] {
        record(&db, Some("10.0.9.9"), Some(user), 1, 3).await;
    }
    record(&db, None, None, 1, 3).await;
    store.forget_rejections_of(blocked).await.unwrap();
    let mut users = tallied_users(&db.url).await;
    users.retain(|u| !u.is_empty());
    assert_eq!(users, [other.to_string()]);

    // Retention: days before the given one go, the rest stay.
    let day1 = rejection(None, None, 1).day;
    assert_eq!(store.forget_rejections_before(day1).await.unwrap(), 4);
    let left = tallies(&db.url).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().all(|(day, ..)| *day == "2026-11-02"),
        "{left:?}"
    );
}

/// The append of `UserErased` deletes the user's refused-login tallies (their client IPs) in
/// its own transaction, as it deletes the data key: a crash right after it leaves none.
pub async fn appending_user_erased_forgets_the_users_tallies(db: Db) {
    let store = db.store.as_ref();
    let (gone, kept) = (
        UserId::from_uuid(Uuid::now_v7()),
        UserId::from_uuid(Uuid::now_v7()),
    );
    for user in [gone, kept] {
        record(&db, Some("198.51.100.7"), Some(user), 0, 100).await;
    }
    store
        .append(super::one(
            &gone.stream(),
            infra::store::ExpectedVersion::Any,
            vec![super::event("UserErased", serde_json::json!({}))],
        ))
        .await
        .unwrap();
    assert_eq!(tallied_users(&db.url).await, [kept.to_string()]);
}
