//! The dashboard's numbers: per-day logins, new and active users from `daily_stats`, distinct
//! actives over 1, 7 and 30 days, refused logins by reason, projection lag and the NATS relay.
//! All read models and checkpoints, no event-log scan.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use projections::{DailyStatsRecord, ProjectionStatus};

use crate::http::routes::health::{relay_progress, RelayProgress};
use crate::http::state::AppState;
use crate::http::ApiError;
use crate::usecases::lookup;

/// Days the dashboard shows by default, and at most.
pub const DEFAULT_DAYS: u32 = 30;
pub const MAX_DAYS: u32 = 90;

/// One day's totals, over the selected app or all apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotals {
    pub day: NaiveDate,
    pub logins: i64,
    pub new_users: i64,
    /// Summed over apps when no app is selected: a user active in two apps counts twice.
    pub active_users: i64,
}

/// Distinct users who logged in over the last 1, 7 and 30 days up to `today`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actives {
    pub dau: i64,
    pub wau: i64,
    pub mau: i64,
}

pub struct DashboardData {
    pub today: NaiveDate,
    pub days: Vec<DayTotals>,
    pub actives: Actives,
    /// Refused logins over the shown days, by reason.
    pub failed_logins: BTreeMap<String, i64>,
    pub projections: Vec<ProjectionStatus>,
    /// `None` when no NATS relay is configured.
    pub relay: Option<RelayProgress>,
}

impl DashboardData {
    pub async fn load(
        state: &AppState,
        appid: Option<&str>,
        days: u32,
        today: NaiveDate,
    ) -> Result<Self, ApiError> {
        let from = today - Duration::days(i64::from(days.max(1)) - 1);
        let records = lookup::daily_stats(state, appid, Some(from), Some(today)).await?;
        let actives = Actives {
            dau: state.read_models.active_users_over(appid, today, 1).await?,
            wau: state.read_models.active_users_over(appid, today, 7).await?,
            mau: state
                .read_models
                .active_users_over(appid, today, 30)
                .await?,
        };
        let projections = state.read_models.status().await?;
        let head = projections.iter().map(|p| p.head).max().unwrap_or(0);
        Ok(Self {
            today,
            days: per_day(&records, from, today),
            actives,
            failed_logins: failed_by_reason(&records),
            projections,
            relay: relay_progress(state, head).await?,
        })
    }
}

/// Every day from `from` to `to`, zero where `daily_stats` has no row, apps summed.
fn per_day(records: &[DailyStatsRecord], from: NaiveDate, to: NaiveDate) -> Vec<DayTotals> {
    let mut days: Vec<DayTotals> = from
        .iter_days()
        .take_while(|day| *day <= to)
        .map(|day| DayTotals {
            day,
            logins: 0,
            new_users: 0,
            active_users: 0,
        })
        .collect();
    for record in records {
        let Ok(index) = usize::try_from((record.day - from).num_days()) else {
            continue;
        };
        if let Some(totals) = days.get_mut(index) {
            totals.logins += record.logins;
            totals.new_users += record.new_users;
            totals.active_users += record.active_users;
        }
    }
    days
}

fn failed_by_reason(records: &[DailyStatsRecord]) -> BTreeMap<String, i64> {
    let mut reasons = BTreeMap::new();
    for (reason, count) in records.iter().flat_map(|r| &r.rejected_logins) {
        *reasons.entry(reason.clone()).or_insert(0) += count;
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).expect("a day")
    }

    fn record(appid: &str, d: u32, logins: i64, rejected: &[(&str, i64)]) -> DailyStatsRecord {
        DailyStatsRecord {
            appid: appid.to_owned(),
            day: day(d),
            logins,
            active_users: 1,
            new_users: 1,
            rejected_logins: rejected
                .iter()
                .map(|(r, n)| ((*r).to_owned(), *n))
                .collect(),
        }
    }

    #[test]
    fn every_day_is_shown_with_apps_summed_and_gaps_zero() {
        let records = [
            record("wxa", 2, 3, &[]),
            record("wxb", 2, 4, &[]),
            record("wxa", 4, 1, &[]),
            record("wxa", 9, 5, &[]),
        ];
        let days = per_day(&records, day(1), day(4));
        let logins: Vec<i64> = days.iter().map(|d| d.logins).collect();
        assert_eq!(logins, [0, 7, 0, 1]);
        assert_eq!(days[1].active_users, 2);
        assert_eq!(days[3].day, day(4));
    }

    #[test]
    fn refused_logins_add_up_by_reason() {
        let records = [
            record("wxa", 1, 0, &[("invalid_code", 2), ("blocked", 1)]),
            record("wxb", 2, 0, &[("invalid_code", 3)]),
        ];
        let reasons = failed_by_reason(&records);
        assert_eq!(reasons["invalid_code"], 5);
        assert_eq!(reasons["blocked"], 1);
        assert_eq!(reasons.len(), 2);
    }
}
