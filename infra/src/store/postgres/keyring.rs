//! The keyring on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::{KeyringEntry, KeyringRewrap, KeyringStore, Reseal, SealedRow, StoreError};

#[async_trait]
impl KeyringStore for PostgresStore {
    async fn keyring_entries(&self) -> Result<Vec<KeyringEntry>, StoreError> {
        let rows: Vec<(String, Vec<u8>, DateTime<Utc>)> =
            sqlx::query_as("SELECT name, sealed_key, created_at FROM keyring ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, sealed_key, created_at)| KeyringEntry {
                name,
                sealed_key,
                created_at,
            })
            .collect())
    }

    async fn insert_keyring_entry(&self, entry: &KeyringEntry) -> Result<Vec<u8>, StoreError> {
        // An instance starting at the same moment may have inserted first: theirs is kept, and
        // read back (the second statement's snapshot sees their commit).
        sqlx::query(
            "INSERT INTO keyring (name, sealed_key, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&entry.name)
        .bind(&entry.sealed_key)
        .bind(entry.created_at)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT sealed_key FROM keyring WHERE name = $1")
                .bind(&entry.name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn rewrap_keyring(&self, rewraps: &[KeyringRewrap]) -> Result<bool, StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        for rewrap in rewraps {
            let updated = sqlx::query(
                "UPDATE keyring SET sealed_key = $3 WHERE name = $1 AND sealed_key = $2",
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
                .fetch_all(&self.pool)
                .await?;
        rows.extend(
            session
                .into_iter()
                .map(|(appid, openid, sealed)| (SealedRow::SessionKey { appid, openid }, sealed)),
        );
        let signing: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT kid, sealed_private_key FROM signing_keys")
                .fetch_all(&self.pool)
                .await?;
        rows.extend(
            signing
                .into_iter()
                .map(|(kid, sealed)| (SealedRow::SigningKey { kid }, sealed)),
        );
        let data: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT user_id::text, sealed_key FROM user_data_keys")
                .fetch_all(&self.pool)
                .await?;
        rows.extend(
            data.into_iter()
                .map(|(user_id, sealed)| (SealedRow::DataKey { user_id }, sealed)),
        );
        Ok(rows)
    }

    async fn reseal(&self, plan: &Reseal) -> Result<bool, StoreError> {
        let mut tx = crate::sql::begin(&self.pool).await?;
        // Logins and new users must wait: a row added after the plan was read is counted below.
        sqlx::query(
            "LOCK TABLE keyring, wechat_session_keys, signing_keys, user_data_keys \
             IN EXCLUSIVE MODE",
        )
        .execute(&mut *tx)
        .await?;
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
                    "UPDATE wechat_session_keys SET sealed = $4 \
                     WHERE appid = $1 AND openid = $2 AND sealed = $3",
                )
                .bind(appid)
                .bind(openid),
                SealedRow::SigningKey { kid } => sqlx::query(
                    "UPDATE signing_keys SET sealed_private_key = $3 \
                     WHERE kid = $1 AND sealed_private_key = $2",
                )
                .bind(kid),
                SealedRow::DataKey { user_id } => sqlx::query(
                    "UPDATE user_data_keys SET sealed_key = $3 \
                     WHERE user_id = $1::uuid AND sealed_key = $2",
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
                "UPDATE keyring SET sealed_key = $3 WHERE name = $1 AND sealed_key = $2",
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
                "INSERT INTO keyring (name, sealed_key, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&entry.name)
            .bind(&entry.sealed_key)
            .bind(entry.created_at)
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
