//! Refused-login tallies on PostgreSQL.

use async_trait::async_trait;
use chrono::NaiveDate;
use domain::UserId;

use super::PostgresStore;
use crate::store::rejections::day_text;
use crate::store::{LoginRejection, RejectionStore, StoreError};
use crate::store::{FOLDED_IP, NO_IP};

#[async_trait]
impl RejectionStore for PostgresStore {
    async fn record_rejection(
        &self,
        rejection: &LoginRejection,
        max_rows_per_app_day: u32,
    ) -> Result<(), StoreError> {
        // One statement: keep the address while the tally exists or the day has room, else
        // fold it.
        sqlx::query(
            "INSERT INTO login_rejections \
               (appid, day, reason, client_ip, user_id, attempts, first_at, last_at) \
             SELECT $1, $2, $3, \
               CASE WHEN EXISTS (SELECT 1 FROM login_rejections WHERE appid = $1 AND day = $2 \
                                   AND reason = $3 AND client_ip = $4 AND user_id = $5) \
                      OR (SELECT count(*) FROM login_rejections \
                          WHERE appid = $1 AND day = $2) < $7 \
                    THEN $4 ELSE $8 END, \
               $5, 1, $6, $6 \
             ON CONFLICT (appid, day, reason, client_ip, user_id) DO UPDATE SET \
               attempts = login_rejections.attempts + 1, \
               last_at = GREATEST(login_rejections.last_at, excluded.last_at)",
        )
        .bind(&rejection.appid)
        .bind(day_text(rejection.day()))
        .bind(&rejection.reason)
        .bind(rejection.client_ip.as_deref().unwrap_or(NO_IP))
        .bind(rejection.user_id.map(|u| u.to_string()).unwrap_or_default())
        .bind(rejection.at.timestamp_micros())
        .bind(i64::from(max_rows_per_app_day))
        .bind(FOLDED_IP)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_rejections_before(&self, day: NaiveDate) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM login_rejections WHERE day < $1")
            .bind(day_text(day))
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn forget_rejections_of(&self, user: UserId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_rejections WHERE user_id = $1 AND user_id <> ''")
            .bind(user.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
