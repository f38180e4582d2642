//! Refused-login tallies on SQLite.

use async_trait::async_trait;
use chrono::NaiveDate;
use domain::UserId;

use super::SqliteStore;
use crate::store::rejections::day_text;
use crate::store::{LoginRejection, RejectionStore, StoreError, FOLDED_IP, NO_IP};

/// Counts on the rejection's own row, if it exists.
const COUNT: &str = "UPDATE login_rejections SET attempts = attempts + 1, \
                       last_at = max(last_at, ?6) \
                     WHERE appid = ?1 AND day = ?2 AND reason = ?3 AND client_ip = ?4 \
                       AND user_id = ?5";

/// A new row in the day's next free slot, if the day has one (nothing on any conflict).
const INSERT: &str = "INSERT INTO login_rejections \
                        (appid, day, reason, client_ip, user_id, slot, attempts, first_at, last_at) \
                      SELECT ?1, ?2, ?3, ?4, ?5, next_slot, 1, ?6, ?6 FROM \
                        (SELECT COALESCE(max(slot) + 1, 0) AS next_slot FROM login_rejections \
                         WHERE appid = ?1 AND day = ?2) \
                      WHERE next_slot < ?7 \
                      ON CONFLICT DO NOTHING";

/// Counts on the day's folded row (no address kept, no slot).
const FOLD: &str = "INSERT INTO login_rejections \
                      (appid, day, reason, client_ip, user_id, slot, attempts, first_at, last_at) \
                    VALUES (?1, ?2, ?3, ?4, ?5, NULL, 1, ?6, ?6) \
                    ON CONFLICT (appid, day, reason, client_ip, user_id) DO UPDATE SET \
                      attempts = attempts + 1, last_at = max(last_at, excluded.last_at)";

#[async_trait]
impl RejectionStore for SqliteStore {
    async fn record_rejection(
        &self,
        rejection: &LoginRejection,
        max_rows_per_app_day: u32,
    ) -> Result<(), StoreError> {
        let day = day_text(rejection.day());
        let ip = rejection.client_ip.as_deref().unwrap_or(NO_IP);
        let user = rejection.user_id.map(|u| u.to_string()).unwrap_or_default();
        let at = rejection.at.timestamp_micros();
        let run = |sql: &'static str, ip: &str| {
            let query = sqlx::query(sql)
                .bind(rejection.appid.clone())
                .bind(day.clone())
                .bind(rejection.reason.clone())
                .bind(ip.to_owned())
                .bind(user.clone())
                .bind(at);
            // Only INSERT reads the cap.
            let query = if sql == INSERT {
                query.bind(i64::from(max_rows_per_app_day))
            } else {
                query
            };
            query.execute(&self.write)
        };
        // The row exists; else a new one fits; else another writer made it meanwhile; else
        // the day is full and the address is folded.
        for sql in [COUNT, INSERT, COUNT] {
            if run(sql, ip).await?.rows_affected() == 1 {
                return Ok(());
            }
        }
        run(FOLD, FOLDED_IP).await?;
        Ok(())
    }

    async fn forget_rejections_before(&self, day: NaiveDate) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM login_rejections WHERE day < ?1")
            .bind(day_text(day))
            .execute(&self.write)
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn forget_rejections_of(&self, user: UserId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_rejections WHERE user_id = ?1 AND user_id <> ''")
            .bind(user.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
