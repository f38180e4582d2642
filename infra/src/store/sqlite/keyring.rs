//! The keyring on SQLite.

use async_trait::async_trait;
use sqlx::Row;

use super::{time_from_db, time_to_db, SqliteStore};
use crate::store::{KeyringEntry, KeyringRewrap, KeyringStore, StoreError};

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
}
