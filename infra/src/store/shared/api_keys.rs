//! Admin and analytics API keys (hashed).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{first, Arg, Sql, SqlRow, SqlStore};
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
impl<B: SqlStore> ApiKeyStore for B {
    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError> {
        let scopes = key.scopes_text();
        self.sql()
            .execute(
                concat!(
                    "INSERT INTO api_keys (",
                    columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6)"
                ),
                &[
                    Arg::Text(&key.key_id),
                    Arg::Bytes(&key.secret_hash),
                    Arg::Text(&scopes),
                    Arg::Text(&key.name),
                    Arg::time(key.created_at),
                    Arg::opt_time(key.revoked_at),
                ],
            )
            .await?;
        Ok(())
    }

    async fn api_key(&self, key_id: &str) -> Result<Option<StoredApiKey>, StoreError> {
        let rows = self
            .sql()
            .fetch(
                concat!("SELECT ", columns!(), " FROM api_keys WHERE key_id = $1"),
                &[Arg::Text(key_id)],
            )
            .await?;
        first(rows).map(|row| decode(&row)).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        self.sql()
            .fetch(
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM api_keys ORDER BY created_at, key_id"
                ),
                &[],
            )
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
        let rows = self
            .sql()
            .fetch_written(
                concat!(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE key_id = $1 \
                     RETURNING ",
                    columns!()
                ),
                &[Arg::Text(key_id), Arg::time(at)],
            )
            .await?;
        first(rows).map(|row| decode(&row)).transpose()
    }
}

/// A row of `columns!()`, by index.
fn decode(row: &impl SqlRow) -> Result<StoredApiKey, StoreError> {
    Ok(StoredApiKey {
        key_id: row.text(0)?,
        secret_hash: row.bytes(1)?,
        scopes: StoredApiKey::scopes_from_text(&row.text(2)?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        name: row.text(3)?,
        created_at: row.time(4)?,
        revoked_at: row.opt_time(5)?,
    })
}
