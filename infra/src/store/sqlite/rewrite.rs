//! The one-time log rewrite on SQLite (see `LogRewrite`): on the write connection, in the
//! process's write turn, one `BEGIN IMMEDIATE` transaction per call.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::UserId;
use sqlx::Row;

use super::{time_to_db, uuid_from_db, SqliteStore};
use crate::store::prepared::{metadata_to_json, schema_version_to_db};
use crate::store::{LogRewrite, OneTimeLock, RecordedEvent, StoreError, StoredClaim};

#[async_trait]
impl LogRewrite for SqliteStore {
    async fn one_time_done(&self, name: &str) -> Result<bool, StoreError> {
        let done: Option<String> =
            sqlx::query_scalar("SELECT done_at FROM one_time_migrations WHERE name = ?1")
                .bind(name)
                .fetch_optional(&self.write)
                .await?;
        Ok(done.is_some())
    }

    async fn record_one_time(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO one_time_migrations (name, done_at) VALUES (?1, ?2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(time_to_db(at))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn forget_one_time(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM one_time_migrations WHERE name = ?1")
            .bind(name)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn one_time_lock(&self) -> Result<OneTimeLock, StoreError> {
        // Another process (a second instance, `identityd migrate`) may open the same file: an
        // exclusive lock on a file beside it, which the OS releases if the process dies.
        let mut name = self.path.clone().into_os_string();
        name.push("-one-time.lock");
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&name)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("one-time lock: {e}")))?
        .map_err(|e| StoreError::Corrupt(format!("one-time lock file: {e}")))?;
        Ok(OneTimeLock::new(file))
    }

    async fn compact(&self) -> Result<(), StoreError> {
        let _turn = self.write_turn.lock().await;
        sqlx::query("VACUUM").execute(&self.write).await?;
        Ok(())
    }

    async fn rewrite_events(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let _turn = self.write_turn.lock().await;
        let mut tx = crate::sql::begin_with(&self.write, "BEGIN IMMEDIATE").await?;
        for event in events {
            sqlx::query(
                "UPDATE events SET payload = ?1, metadata = ?2, schema_version = ?3 \
                 WHERE position = ?4",
            )
            .bind(event.payload.to_string())
            .bind(metadata_to_json(&event.metadata)?.to_string())
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
            .fetch_all(&self.write)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredClaim {
                    kind: row.try_get(0)?,
                    value: row.try_get(1)?,
                    user_id: UserId::from_uuid(uuid_from_db(row.try_get(2)?)?),
                })
            })
            .collect()
    }

    async fn rekey_claims(&self, changes: &[(String, String, String)]) -> Result<(), StoreError> {
        let _turn = self.write_turn.lock().await;
        let mut tx = crate::sql::begin_with(&self.write, "BEGIN IMMEDIATE").await?;
        for (kind, old, new) in changes {
            sqlx::query("UPDATE claims SET value = ?3 WHERE kind = ?1 AND value = ?2")
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
        let _turn = self.write_turn.lock().await;
        let mut tx = crate::sql::begin_with(&self.write, "BEGIN IMMEDIATE").await?;
        for (user, hash) in entries {
            sqlx::query(
                "INSERT INTO phone_lookup (user_id, phone_index) VALUES (?1, ?2) \
                 ON CONFLICT (user_id) DO UPDATE SET phone_index = excluded.phone_index",
            )
            .bind(user.to_string())
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn session_key_accounts(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT appid, openid FROM wechat_session_keys")
            .fetch_all(&self.write)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    async fn drop_session_keys(&self, accounts: &[(String, String)]) -> Result<(), StoreError> {
        let _turn = self.write_turn.lock().await;
        let mut tx = crate::sql::begin_with(&self.write, "BEGIN IMMEDIATE").await?;
        for (appid, openid) in accounts {
            sqlx::query("DELETE FROM wechat_session_keys WHERE appid = ?1 AND openid = ?2")
                .bind(appid)
                .bind(openid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
