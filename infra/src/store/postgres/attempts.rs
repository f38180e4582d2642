//! Attempt counters on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::{AttemptCounter, StoreError};

#[async_trait]
impl AttemptCounter for PostgresStore {
    async fn count_attempt(&self, subject: &str, window: i64) -> Result<u32, StoreError> {
        sqlx::query("DELETE FROM attempt_counters WHERE window_start < $1")
            .bind(window)
            .execute(&self.pool)
            .await?;
        let attempts: i64 = sqlx::query_scalar(
            "INSERT INTO attempt_counters (subject, window_start, attempts) VALUES ($1, $2, 1) \
             ON CONFLICT (subject) DO UPDATE SET \
               attempts = CASE WHEN attempt_counters.window_start = excluded.window_start \
                          THEN attempt_counters.attempts + 1 ELSE 1 END, \
               window_start = excluded.window_start \
             RETURNING attempts",
        )
        .bind(subject)
        .bind(window)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    async fn uncount_attempt(&self, subject: &str, window: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE attempt_counters SET attempts = attempts - 1 \
             WHERE subject = $1 AND window_start = $2 AND attempts > 0",
        )
        .bind(subject)
        .bind(window)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
