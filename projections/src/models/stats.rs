//! `daily_stats`: per app and UTC day, logins, distinct users who logged in, and new users.
//! `daily_active_users` remembers who was counted active on a day, so a second login the same
//! day does not count twice.

use std::collections::{BTreeMap, BTreeSet};

use infra::store::RecordedEvent;
use sqlx::Row;

use crate::db::{Rows, Tx, Val};
use crate::error::ProjectionError;
use crate::event::{self, USER_LOGGED_IN, USER_REGISTERED};
use crate::table::{Col, Table};

pub(crate) const DAILY_STATS: Table = Table {
    name: "daily_stats",
    columns: &[
        ("appid", Col::Text),
        ("day", Col::Text),
        ("logins", Col::Int),
        ("active_users", Col::Int),
        ("new_users", Col::Int),
    ],
    key: &["appid", "day"],
    indexes: &[("day", &["day", "appid"])],
    write_indexes: &[],
};

pub(crate) const DAILY_ACTIVE_USERS: Table = Table {
    name: "daily_active_users",
    columns: &[
        ("appid", Col::Text),
        ("day", Col::Text),
        ("user_id", Col::Text),
    ],
    key: &["appid", "day", "user_id"],
    indexes: &[],
    write_indexes: &[],
};

pub(crate) const TABLES: &[Table] = &[DAILY_STATS, DAILY_ACTIVE_USERS];

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    logins: i64,
    active: i64,
    new: i64,
}

pub(super) async fn apply(
    tx: &mut Tx,
    generation: i64,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let mut counts: BTreeMap<(String, String), Counts> = BTreeMap::new();
    let mut active = BTreeSet::new();
    for e in events {
        let (Some(appid), true) = (
            event::appid(e),
            matches!(e.event_type.as_str(), USER_LOGGED_IN | USER_REGISTERED),
        ) else {
            continue;
        };
        let day = event::day(e.occurred_at);
        if e.event_type == USER_REGISTERED {
            counts.entry((appid, day)).or_default().new += 1;
        } else if let Some(user) = event::uuid_field(e, "user_id") {
            counts
                .entry((appid.clone(), day.clone()))
                .or_default()
                .logins += 1;
            active.insert((appid, day, user.to_string()));
        }
    }
    if counts.is_empty() {
        return Ok(());
    }
    if !active.is_empty() {
        let mut rows = Rows::new(&DAILY_ACTIVE_USERS, generation);
        for (appid, day, user) in active {
            rows.push([Val::from(appid), day.into(), user.into()]);
        }
        // Only the rows actually inserted come back: users first active that day.
        let first_today = rows
            .insert(tx, "ON CONFLICT DO NOTHING RETURNING appid, day")
            .await?;
        for row in first_today {
            let key: (String, String) = (row.try_get(0)?, row.try_get(1)?);
            counts.entry(key).or_default().active += 1;
        }
    }
    let table = DAILY_STATS.physical(generation);
    let mut rows = Rows::new(&DAILY_STATS, generation);
    for ((appid, day), c) in counts {
        rows.push([
            Val::from(appid),
            day.into(),
            c.logins.into(),
            c.active.into(),
            c.new.into(),
        ]);
    }
    let upsert = format!(
        "ON CONFLICT (appid, day) DO UPDATE SET logins = {table}.logins + excluded.logins, \
         active_users = {table}.active_users + excluded.active_users, \
         new_users = {table}.new_users + excluded.new_users"
    );
    rows.insert(tx, &upsert).await?;
    Ok(())
}
