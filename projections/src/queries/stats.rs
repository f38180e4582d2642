use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::Where;
use crate::error::ProjectionError;
use crate::event::day_text;
use crate::ReadModels;

/// One day (in `IDENTITY_STATS_TIMEZONE`) of one app from the `daily_stats` read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DailyStatsRecord {
    pub appid: String,
    /// The day, in `IDENTITY_STATS_TIMEZONE`.
    pub day: NaiveDate,
    pub logins: i64,
    /// Distinct users who logged in that day.
    pub active_users: i64,
    pub new_users: i64,
    /// Refused logins by reason (`invalid_code`, `high_risk`, `blocked`, `rate_limited`);
    /// kept for `IDENTITY_REJECTION_RETENTION_DAYS`.
    pub rejected_logins: BTreeMap<String, i64>,
}

impl ReadModels {
    /// Per app and day from `from` to `to` (both inclusive), by day then app. Days
    /// without any login, registration or refused login have no row.
    pub async fn daily_stats(
        &self,
        appid: Option<&str>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyStatsRecord>, ProjectionError> {
        let mut w = Where::default();
        w.days(appid, from, to);
        let sql = format!(
            "SELECT appid, day, logins, active_users, new_users FROM daily_stats {} \
             ORDER BY day, appid",
            w.sql()
        );
        let rows = w.fetch_all(self.db(), &sql).await?;
        let mut days = BTreeMap::new();
        for row in &rows {
            let record = DailyStatsRecord {
                appid: row.try_get("appid")?,
                day: parse_day(row.try_get("day")?)?,
                logins: row.try_get("logins")?,
                active_users: row.try_get("active_users")?,
                new_users: row.try_get("new_users")?,
                rejected_logins: BTreeMap::new(),
            };
            days.insert((day_text(record.day), record.appid.clone()), record);
        }
        for ((appid, day), by_reason) in self.rejection_counts(appid, from, to).await? {
            let record = match days.entry((day.clone(), appid.clone())) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(DailyStatsRecord {
                    appid,
                    day: parse_day(day)?,
                    logins: 0,
                    active_users: 0,
                    new_users: 0,
                    rejected_logins: BTreeMap::new(),
                }),
            };
            record.rejected_logins = by_reason;
        }
        Ok(days.into_values().collect())
    }
}

impl ReadModels {
    /// Distinct users who logged in (in one app, or in any) on the `days` days ending with
    /// `last_day`, inclusive: 1 is the day's actives, 7 and 30 the weekly and monthly ones.
    pub async fn active_users_over(
        &self,
        appid: Option<&str>,
        last_day: NaiveDate,
        days: u32,
    ) -> Result<i64, ProjectionError> {
        let Some(first_day) = days
            .checked_sub(1)
            .and_then(|back| last_day.checked_sub_days(Days::new(u64::from(back))))
        else {
            return Ok(0);
        };
        let mut w = Where::default();
        w.days(appid, first_day, last_day);
        let sql = format!(
            "SELECT COUNT(DISTINCT user_id) FROM daily_active_users {}",
            w.sql()
        );
        let row = w.fetch_one(self.db(), &sql).await?;
        Ok(row.try_get(0)?)
    }
}

fn parse_day(day: String) -> Result<NaiveDate, ProjectionError> {
    NaiveDate::parse_from_str(&day, "%Y-%m-%d")
        .map_err(|e| ProjectionError::Corrupt(format!("day {day:?}: {e}")))
}
