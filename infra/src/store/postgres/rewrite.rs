//! The one-time log rewrite on PostgreSQL (see `LogRewrite`): one transaction per call.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::UserId;
use sqlx::Row;
use uuid::Uuid;

use super::PostgresStore;
use crate::store::prepared::{metadata_to_json, schema_version_to_db};
use crate::store::{LogRewrite, OneTimeLock, RecordedEvent, StoreError, StoredClaim};

/// The advisory lock key of one-time migrations (any constant; this one spells "IDOT").
const ONE_TIME_LOCK: i64 = 0x4944_4f54;

#[async_trait]
impl LogRewrite for PostgresStore {
    async fn one_time_done(&self, name: &str) -> Result<bool, StoreError> {
        let done: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT done_at FROM one_time_migrations WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(done.is_some())
    }

    async fn record_one_time(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO one_time_migrations (name, done_at) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_one_time(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM one_time_migrations WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn one_time_lock(&self) -> Result<OneTimeLock, StoreError> {
        // A connection of its own, out of the pool: the session lock lasts as long as it, and
        // closing it (drop, or the process dying) releases the lock.
        let mut conn = self.pool.acquire().await?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(ONE_TIME_LOCK)
            .execute(&mut conn)
            .await?;
        Ok(OneTimeLock::new(std::sync::Mutex::new(conn)))
    }

    async fn compact(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn rewrite_events(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        for event in events {
            sqlx::query(
                "UPDATE events SET payload = $1, metadata = $2, schema_version = $3 \
                 WHERE position = $4",
            )
            .bind(&event.payload)
            .bind(metadata_to_json(&event.metadata)?)
            .bind(schema_version_to_db(event.schema_version)?)
            .bind(event.position)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claims(&self) -> Result<Vec<StoredClaim>, StoreError> {
        let rows = sqlx::query("SELECT kind, value, user_id FROM claims")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredClaim {
                    kind: row.try_get(0)?,
                    value: row.try_get(1)?,
                    user_id: UserId::from_uuid(row.try_get::<Uuid, _>(2)?),
                })
            })
            .collect()
    }

    async fn rekey_claims(&self, changes: &[(String, String, String)]) -> Result<(), StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        for (kind, old, new) in changes {
            sqlx::query("UPDATE claims SET value = $3 WHERE kind = $1 AND value = $2")
                .bind(kind)
                .bind(old)
                .bind(new.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn put_phone_indexes(&self, entries: &[(UserId, String)]) -> Result<(), StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        for (user, hash) in entries {
            sqlx::query(
                "INSERT INTO phone_lookup (user_id, phone_index) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET phone_index = EXCLUDED.phone_index",
            )
            .bind(user.as_uuid())
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn session_key_accounts(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT appid, openid FROM wechat_session_keys")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    async fn drop_session_keys(&self, accounts: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        for (appid, openid) in accounts {
            sqlx::query("DELETE FROM wechat_session_keys WHERE appid = $1 AND openid = $2")
                .bind(appid)
                .bind(openid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
