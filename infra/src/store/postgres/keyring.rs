//! The keyring on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::{KeyringEntry, KeyringRewrap, KeyringStore, StoreError};

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
}
