//! Refused logins, kept out of the event log: an anonymous caller must not be able to make the
//! immutable log grow. They are tallied per app, day (in the stats' zone), reason, client IP and (for a known,
//! blocked user) user, so a flood adds to counters instead of rows; the rows of one app and
//! day are capped (beyond the cap the address is folded into [`FOLDED_IP`]), and days older than
//! the retention are deleted. Admins read them through the audit log and the daily stats.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::UserId;

use super::StoreError;

/// The client-IP column of a tally whose address is not kept: the app's day was already full.
pub const FOLDED_IP: &str = "*";
/// The client-IP column when the address was not known.
pub const NO_IP: &str = "";

/// One refused login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRejection {
    pub appid: String,
    /// `invalid_code`, `high_risk`, `blocked`, `rate_limited`.
    pub reason: String,
    pub client_ip: Option<String>,
    /// The user, when WeChat accepted the code (a blocked user): kept so erasure finds it.
    pub user_id: Option<UserId>,
    pub at: DateTime<Utc>,
    /// The day it is counted in: `at`'s date in the stats' zone (`IDENTITY_STATS_TIMEZONE`),
    /// which the caller knows.
    pub day: NaiveDate,
}

#[async_trait]
pub trait RejectionStore: Send + Sync {
    /// Adds the rejection to its tally. A new tally row is made only while the app's day holds
    /// fewer than `max_rows_per_app_day` rows; after that the address is folded.
    async fn record_rejection(
        &self,
        rejection: &LoginRejection,
        max_rows_per_app_day: u32,
    ) -> Result<(), StoreError>;

    /// Deletes the tallies of days before `day` (retention); returns how many rows went.
    async fn forget_rejections_before(&self, day: NaiveDate) -> Result<u64, StoreError>;

    /// Deletes the tallies naming this user (erasure).
    async fn forget_rejections_of(&self, user: UserId) -> Result<(), StoreError>;
}

/// The text of a day as the table keeps it.
pub fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}
