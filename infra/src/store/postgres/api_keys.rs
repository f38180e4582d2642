//! Admin and analytics API keys on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PostgresStore;
use crate::api_keys::StoredApiKey;
use crate::store::{ApiKeyStore, StoreError};

/// The columns every query reads, as a macro so the statements are `&'static str` (no
/// formatting per request: keys are looked up on every admin and analytics request).
macro_rules! columns {
    () => {
        "key_id, secret_hash, scopes, name, created_at, revoked_at"
    };
}

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&key.key_id)
        .bind(&key.secret_hash)
        .bind(key.scopes_text())
        .bind(&key.name)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<StoredApiKey>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys WHERE key_id = $1"
        ))
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| decode(&row))
        .transpose()
    }

    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys ORDER BY created_at, key_id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decode)
        .collect()
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<StoredApiKey>, StoreError> {
        sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE key_id = $1 \
             RETURNING ",
            columns!()
        ))
        .bind(key_id)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| decode(&row))
        .transpose()
    }
}

fn decode(row: &PgRow) -> Result<StoredApiKey, StoreError> {
    let scopes: &str = row.try_get("scopes")?;
    Ok(StoredApiKey {
        key_id: row.try_get("key_id")?,
        secret_hash: row.try_get("secret_hash")?,
        scopes: StoredApiKey::scopes_from_text(scopes)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}
