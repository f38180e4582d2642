//! Pending asynchronous image checks: `trace_id → (appid, user, avatar, submitted at)`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::AvatarId;

use super::{first, Arg, Sql, SqlRow, SqlStore};
use crate::store::{MediaCheckStore, PendingMediaCheck, StoreError};

#[async_trait]
impl<B: SqlStore> MediaCheckStore for B {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn record_media_check(
        &self,
        trace_id: &str,
        check: &PendingMediaCheck,
        purge_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = self.sql();
        // The user's checks of images since replaced or removed go too (their verdicts would
        // change nothing): at most the current avatar's and those of uploads in flight stay.
        // Only those: a slower, older upload's submission must not forget a newer one's.
        sql.execute(
            "DELETE FROM media_checks WHERE created_at < $1 \
             OR (user_id = $2 AND avatar_id NOT IN \
                 (SELECT avatar_id FROM avatars WHERE user_id = $2))",
            &[Arg::Int(purge_before.timestamp()), Arg::user(check.user_id)],
        )
        .await?;
        sql.execute(
            "INSERT INTO media_checks (trace_id, appid, user_id, avatar_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (trace_id) DO NOTHING",
            &[
                Arg::Text(trace_id),
                Arg::Text(&check.appid),
                Arg::user(check.user_id),
                Arg::uuid(check.avatar_id.as_uuid()),
                Arg::Int(check.created_at.timestamp()),
            ],
        )
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn media_check(
        &self,
        appid: &str,
        trace_id: &str,
    ) -> Result<Option<PendingMediaCheck>, StoreError> {
        let rows = self
            .sql()
            .fetch_written(
                "SELECT appid, user_id, avatar_id, created_at FROM media_checks \
                 WHERE trace_id = $1 AND appid = $2",
                &[Arg::Text(trace_id), Arg::Text(appid)],
            )
            .await?;
        let Some(row) = first(rows) else {
            return Ok(None);
        };
        let avatar_id = AvatarId::from_uuid(row.uuid(2)?);
        let created_at = DateTime::from_timestamp(row.int(3)?, 0)
            .ok_or_else(|| StoreError::Corrupt("media check time".into()))?;
        Ok(Some(PendingMediaCheck {
            appid: row.text(0)?,
            user_id: row.user(1)?,
            avatar_id,
            created_at,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn forget_media_check(&self, trace_id: &str) -> Result<(), StoreError> {
        self.sql()
            .execute(
                "DELETE FROM media_checks WHERE trace_id = $1",
                &[Arg::Text(trace_id)],
            )
            .await?;
        Ok(())
    }
}
