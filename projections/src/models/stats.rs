//! `daily_stats`: per app and day (in `IDENTITY_STATS_TIMEZONE`), logins, distinct users who logged in, and new users.
//! `daily_active_users` remembers who was counted active on a day, so a second login the same
//! day does not count twice.

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Tz;
use infra::store::RecordedEvent;
use sqlx::Row;

use crate::db::{Rows, Tx};
use crate::error::ProjectionError;
use crate::event::{self, USER_LOGGED_IN, USER_REGISTERED};
use crate::table::{table, Table};

table! {
    /// One app's counts of one day.
    pub(crate) struct DayStats as DAILY_STATS = "daily_stats" {
        appid: String,
        day: String,
        logins: i64,
        active_users: i64,
        new_users: i64,
    }
    key (appid, day)
    indexes {
        day (day, appid),
    }
    write_indexes ()
}

table! {
    /// A user counted active by an app on a day.
    pub(crate) struct ActiveUser as DAILY_ACTIVE_USERS = "daily_active_users" {
        appid: String,
        day: String,
        user_id: String,
    }
    key (appid, day, user_id)
    indexes {
        // Actives over a window in every app.
        day (day, user_id),
    }
    write_indexes ()
}

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
    zone: Tz,
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
        let day = event::day(e.occurred_at, zone);
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
        let mut rows = Rows::new(generation);
        for (appid, day, user_id) in active {
            rows.push(ActiveUser {
                appid,
                day,
                user_id,
            });
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
    let mut rows = Rows::new(generation);
    for ((appid, day), c) in counts {
        rows.push(DayStats {
            appid,
            day,
            logins: c.logins,
            active_users: c.active,
            new_users: c.new,
        });
    }
    let upsert = format!(
        "ON CONFLICT (appid, day) DO UPDATE SET logins = {table}.logins + excluded.logins, \
         active_users = {table}.active_users + excluded.active_users, \
         new_users = {table}.new_users + excluded.new_users"
    );
    rows.insert(tx, &upsert).await?;
    Ok(())
}
