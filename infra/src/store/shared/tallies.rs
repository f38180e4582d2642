//! Attempt counters and refused-login tallies: counters kept in the database, so that a cap
//! holds across every instance sharing it.

use async_trait::async_trait;
use chrono::NaiveDate;
use domain::UserId;

use super::{Arg, Sql, SqlRow, SqlStore};
use crate::store::rejections::day_text;
use crate::store::{AttemptCounter, LoginRejection, RejectionStore, StoreError, FOLDED_IP, NO_IP};

#[async_trait]
impl<B: SqlStore> AttemptCounter for B {
    async fn count_attempt(&self, subject: &str, window: i64) -> Result<u32, StoreError> {
        let expired = "DELETE FROM attempt_counters WHERE window_start < $1";
        self.sql().execute(expired, &[Arg::Int(window)]).await?;
        let rows = self
            .sql().fetch_written(
                "INSERT INTO attempt_counters (subject, window_start, attempts) VALUES ($1, $2, 1) \
                 ON CONFLICT (subject) DO UPDATE SET \
                   attempts = CASE WHEN attempt_counters.window_start = excluded.window_start \
                              THEN attempt_counters.attempts + 1 ELSE 1 END, \
                   window_start = excluded.window_start \
                 RETURNING attempts",
                &[Arg::Text(subject), Arg::Int(window)],
            )
            .await?;
        let attempts = match rows.first() {
            Some(row) => row.int(0)?,
            None => return Err(StoreError::Corrupt("an upsert returned no row".into())),
        };
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    async fn uncount_attempt(&self, subject: &str, window: i64) -> Result<(), StoreError> {
        self.sql()
            .execute(
                "UPDATE attempt_counters SET attempts = attempts - 1 \
             WHERE subject = $1 AND window_start = $2 AND attempts > 0",
                &[Arg::Text(subject), Arg::Int(window)],
            )
            .await?;
        Ok(())
    }
}

/// Counts on the rejection's own row, if it exists.
const COUNT: &str = "UPDATE login_rejections SET attempts = attempts + 1, \
                       last_at = CASE WHEN last_at > $6 THEN last_at ELSE $6 END \
                     WHERE appid = $1 AND day = $2 AND reason = $3 AND client_ip = $4 \
                       AND user_id = $5";

/// A new row in the day's next free slot, if the day has one (nothing on any conflict).
const INSERT: &str = "INSERT INTO login_rejections \
                        (appid, day, reason, client_ip, user_id, slot, attempts, first_at, last_at) \
                      SELECT $1, $2, $3, $4, $5, next_slot, 1, $6, $6 FROM \
                        (SELECT COALESCE(max(slot) + 1, 0) AS next_slot FROM login_rejections \
                         WHERE appid = $1 AND day = $2) AS free \
                      WHERE next_slot < $7 \
                      ON CONFLICT DO NOTHING";

/// Counts on the day's folded row (no address kept, no slot).
const FOLD: &str = "INSERT INTO login_rejections \
                      (appid, day, reason, client_ip, user_id, slot, attempts, first_at, last_at) \
                    VALUES ($1, $2, $3, $4, $5, NULL, 1, $6, $6) \
                    ON CONFLICT (appid, day, reason, client_ip, user_id) DO UPDATE SET \
                      attempts = login_rejections.attempts + 1, \
                      last_at = CASE WHEN login_rejections.last_at > excluded.last_at \
                                THEN login_rejections.last_at ELSE excluded.last_at END";

#[async_trait]
impl<B: SqlStore> RejectionStore for B {
    async fn record_rejection(
        &self,
        rejection: &LoginRejection,
        max_rows_per_app_day: u32,
    ) -> Result<(), StoreError> {
        let day = day_text(rejection.day);
        let ip = rejection.client_ip.as_deref().unwrap_or(NO_IP);
        let user = rejection.user_id.map(|u| u.to_string()).unwrap_or_default();
        let args = |ip| {
            [
                Arg::Text(&rejection.appid),
                Arg::Text(&day),
                Arg::Text(&rejection.reason),
                Arg::Text(ip),
                Arg::Text(&user),
                Arg::Int(rejection.at.timestamp_micros()),
                // Only INSERT reads the cap.
                Arg::Int(i64::from(max_rows_per_app_day)),
            ]
        };
        let own = args(ip);
        // The row exists; else a new one fits; else another writer made it meanwhile; else
        // the day is full and the address is folded.
        for (sql, args) in [(COUNT, &own[..6]), (INSERT, &own[..]), (COUNT, &own[..6])] {
            if self.sql().execute(sql, args).await? == 1 {
                return Ok(());
            }
        }
        self.sql().execute(FOLD, &args(FOLDED_IP)[..6]).await?;
        Ok(())
    }

    async fn forget_rejections_before(&self, day: NaiveDate) -> Result<u64, StoreError> {
        self.sql()
            .execute(
                "DELETE FROM login_rejections WHERE day < $1",
                &[Arg::Text(&day_text(day))],
            )
            .await
    }

    async fn forget_rejections_of(&self, user: UserId) -> Result<(), StoreError> {
        self.sql()
            .execute(
                "DELETE FROM login_rejections WHERE user_id = $1 AND user_id <> ''",
                &[Arg::Text(&user.to_string())],
            )
            .await?;
        Ok(())
    }
}
