use chrono::NaiveDate;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::Where;
use crate::error::ProjectionError;
use crate::event::day_text;
use crate::ReadModels;

/// One UTC day of one app from the `daily_stats` read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DailyStatsRecord {
    pub appid: String,
    /// The UTC day.
    pub day: NaiveDate,
    pub logins: i64,
    /// Distinct users who logged in that day.
    pub active_users: i64,
    pub new_users: i64,
}

impl ReadModels {
    /// Per app and UTC day from `from` to `to` (both inclusive), by day then app. Days
    /// without any login or registration have no row.
    pub async fn daily_stats(
        &self,
        appid: Option<&str>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyStatsRecord>, ProjectionError> {
        let mut w = Where::default();
        let p = w.arg(day_text(from));
        w.and(format!("day >= {p}"));
        let p = w.arg(day_text(to));
        w.and(format!("day <= {p}"));
        if let Some(appid) = appid {
            let p = w.arg(appid);
            w.and(format!("appid = {p}"));
        }
        let sql = format!(
            "SELECT appid, day, logins, active_users, new_users FROM daily_stats {} \
             ORDER BY day, appid",
            w.sql()
        );
        let rows = w.bind(sqlx::query(&sql)).fetch_all(&self.db().read).await?;
        rows.iter()
            .map(|row| {
                let day: String = row.try_get("day")?;
                Ok(DailyStatsRecord {
                    appid: row.try_get("appid")?,
                    day: NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                        .map_err(|e| ProjectionError::Corrupt(format!("day {day:?}: {e}")))?,
                    logins: row.try_get("logins")?,
                    active_users: row.try_get("active_users")?,
                    new_users: row.try_get("new_users")?,
                })
            })
            .collect()
    }
}
