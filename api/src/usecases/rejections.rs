//! Refused logins. They are not events: anyone can send an invalid code, and the log is
//! immutable, so each refusal would be a permanent write by an anonymous caller. They are
//! counted on `/metrics` (per instance, by app and reason) and tallied in a bounded,
//! retention-limited table (`infra::store::rejections`) that the audit log and the daily
//! stats read.

use std::time::Duration;

use chrono::{Days, NaiveDate};
use domain::{AppId, RejectionReason, UserId};
use infra::store::LoginRejection;

use super::context::Context;
use super::error::UseCaseError;
pub use super::rejection_counts::Rejections;
use super::services::Services;

/// Tally rows one app may add per day before addresses are folded: a flood from many
/// addresses grows counters, not the table.
pub const MAX_ROWS_PER_APP_DAY: u32 = 1_000;

/// How often expired days are deleted.
const RETENTION_SWEEP: Duration = Duration::from_secs(60 * 60);

/// Why, as the tallies, the metrics and the old `LoginRejected` events name it.
pub fn reason_name(reason: RejectionReason) -> &'static str {
    match reason {
        RejectionReason::InvalidCode => "invalid_code",
        RejectionReason::HighRisk => "high_risk",
        RejectionReason::Blocked => "blocked",
        RejectionReason::RateLimited => "rate_limited",
    }
}

/// Counts and tallies one refused login. `user_id` only when WeChat named a known user.
pub async fn record(
    state: &Services,
    appid: &AppId,
    reason: RejectionReason,
    user_id: Option<UserId>,
    ctx: &Context,
) -> Result<(), UseCaseError> {
    let reason = reason_name(reason);
    state.rejections.count(appid, reason);
    let at = state.clock.now();
    let rejection = LoginRejection {
        appid: appid.to_string(),
        reason: reason.to_owned(),
        client_ip: ctx.client_ip.map(|ip| ip.to_string()),
        user_id,
        at,
        day: state.stats_day(at),
    };
    state
        .store
        .record_rejection(&rejection, MAX_ROWS_PER_APP_DAY)
        .await?;
    Ok(())
}

/// Deletes the tallies of days past the retention, now and every hour.
pub fn spawn_retention(
    state: impl AsRef<Services> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETENTION_SWEEP);
        loop {
            tick.tick().await;
            if let Err(err) = forget_expired(state.as_ref()).await {
                tracing::warn!(error = %err, "could not delete expired login rejections");
            }
        }
    })
}

/// Deletes the days older than the retention.
pub async fn forget_expired(state: &Services) -> Result<u64, UseCaseError> {
    let today = state.stats_day(state.clock.now());
    let oldest = oldest_kept(today, state.rejections.retention_days);
    let forgotten = state.store.forget_rejections_before(oldest).await?;
    if forgotten > 0 {
        tracing::info!(rows = forgotten, "deleted expired login rejections");
    }
    Ok(forgotten)
}

/// The first day a retention of `days` days keeps, today being one of them.
fn oldest_kept(today: NaiveDate, days: u32) -> NaiveDate {
    today
        .checked_sub_days(Days::new(u64::from(days.max(1) - 1)))
        .unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retention_counts_today() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 5).expect("a day");
        let november_6 = NaiveDate::from_ymd_opt(2026, 11, 6).expect("a day");
        assert_eq!(oldest_kept(today, 30), november_6);
        assert_eq!(oldest_kept(today, 1), today);
        assert_eq!(oldest_kept(today, 0), today, "at least today");
    }
}
