//! The keyring on SQLite.

use async_trait::async_trait;
use sqlx::Row;

use super::{time_from_db, time_to_db, SqliteStore};
use crate::store::{KeyringEntry, KeyringRewrap, KeyringStore, Reseal, SealedRow, StoreError};

#[async_trait]
impl KeyringStore for SqliteStore {
    async fn keyring_entries(&self) -> Result<Vec<KeyringEntry>, StoreError> {
        sqlx::query("SELECT name, sealed_key, created_at FROM keyring ORDER BY name")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|row| {
                Ok(KeyringEntry {
                    name: row.try_get(0)?,
                    sealed_key: row.try_get(1)?,
                    created_at: time_from_db(row.try_get::<&str, _>(2)?)?,
                })
            })
            .collect()
    }

    async fn insert_keyring_entry(&self, entry: &KeyringEntry) -> Result<Vec<u8>, StoreError> {
        let _turn = self.write_turn.lock().await;
        sqlx::query(
            "INSERT INTO keyring (name, sealed_key, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&entry.name)
        .bind(&entry.sealed_key)
        .bind(time_to_db(entry.created_at))
        .execute(&self.write)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT sealed_key FROM keyring WHERE name = ?1")
                .bind(&entry.name)
                .fetch_one(&self.write)
                .await?,
        )
    }

    async fn rewrap_keyring(&self, rewraps: &[KeyringRewrap]) -> Result<bool, StoreError> {
        let _turn = self.write_turn.lock().await;
        let mut tx = crate::sql::begin_with(&self.write, "BEGIN IMMEDIATE").await?;
        for rewrap in rewraps {
            let updated = sqlx::query(
                "UPDATE keyring SET sealed_key = ?3 WHERE name = ?1 AND sealed_key = ?2",
            )
            .bind(&rewrap.name)
            .bind(&rewrap.from)
            .bind(&rewrap.to)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                // Dropping the transaction rolls it back: all or nothing.
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn sealed_rows(&self) -> Result<Vec<(SealedRow, Vec<u8>)>, StoreError> {
        let mut rows = Vec::new();
        let session: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT appid, openid, sealed FROM wechat_session_keys")
                .fetch_all(&self.write)
                .await?;
        rows.extend(
            session
                .into_iter()
                .map(|(appid, openid, sealed)| (SealedRow::SessionKey { appid, openid }, sealed)),
        );
        let signing: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT kid, sealed_private_key FROM signing_keys")
                .fetch_all(&self.write)
                .await?;
        rows.extend(
            signing
                .into_iter()
                .map(|(kid, sealed)| (SealedRow::SigningKey { kid }, sealed)),
        );
        let data: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT user_id, sealed_key FROM user_data_keys")
                .fetch_all(&self.write)
                .await?;
        rows.extend(
            data.into_iter()
                .map(|(user_id, sealed)| (SealedRow::DataKey { user_id }, sealed)),
        );
        Ok(rows)
    }

    async fn reseal(&self, plan: &Reseal) -> Result<bool, StoreError> {
        let _turn = self.write_turn.lock().await;
        let mut tx = crate::sql::begin_with(&self.write, "BEGIN IMMEDIATE").await?;
        for (table, expected) in ["wechat_session_keys", "signing_keys", "user_data_keys"]
            .into_iter()
            .zip(plan.counts())
        {
            let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&mut *tx)
                .await?;
            if count != expected {
                return Ok(false);
            }
        }
        for reseal in &plan.rows {
            let query = match &reseal.row {
                SealedRow::SessionKey { appid, openid } => sqlx::query(
                    "UPDATE wechat_session_keys SET sealed = ?4 \
                     WHERE appid = ?1 AND openid = ?2 AND sealed = ?3",
                )
                .bind(appid)
                .bind(openid),
                SealedRow::SigningKey { kid } => sqlx::query(
                    "UPDATE signing_keys SET sealed_private_key = ?3 \
                     WHERE kid = ?1 AND sealed_private_key = ?2",
                )
                .bind(kid),
                SealedRow::DataKey { user_id } => sqlx::query(
                    "UPDATE user_data_keys SET sealed_key = ?3 \
                     WHERE user_id = ?1 AND sealed_key = ?2",
                )
                .bind(user_id),
            };
            let updated = query
                .bind(&reseal.from)
                .bind(&reseal.to)
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() != 1 {
                return Ok(false);
            }
        }
        for rewrap in &plan.rewraps {
            let updated = sqlx::query(
                "UPDATE keyring SET sealed_key = ?3 WHERE name = ?1 AND sealed_key = ?2",
            )
            .bind(&rewrap.name)
            .bind(&rewrap.from)
            .bind(&rewrap.to)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Ok(false);
            }
        }
        if let Some(entry) = &plan.insert {
            let inserted = sqlx::query(
                "INSERT INTO keyring (name, sealed_key, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&entry.name)
            .bind(&entry.sealed_key)
            .bind(time_to_db(entry.created_at))
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() != 1 {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
