//! Per-user data keys, and the nonces of signed requests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::UserId;

use super::{first, Arg, Sql, SqlRow, SqlStore};
use crate::store::{DataKeyStore, NonceStore, StoreError};

const DATA_KEY: &str = "SELECT sealed_key FROM user_data_keys WHERE user_id = $1";

#[async_trait]
impl<B: SqlStore> DataKeyStore for B {
    async fn data_key(&self, user_id: UserId) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.sql().fetch(DATA_KEY, &[Arg::user(user_id)]).await?;
        first(rows).map(|row| row.bytes(0)).transpose()
    }

    /// One statement when the key is new; a second read only when a concurrent insert won.
    async fn insert_data_key(&self, user_id: UserId, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let sql = self.sql();
        let inserted = sql
            .fetch_written(
                "INSERT INTO user_data_keys (user_id, sealed_key, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO NOTHING RETURNING sealed_key",
                &[
                    Arg::user(user_id),
                    Arg::Bytes(sealed),
                    Arg::time(Utc::now()),
                ],
            )
            .await?;
        if let Some(row) = first(inserted) {
            return row.bytes(0);
        }
        // On the writer: SQLite's read pool may not see the rival's insert yet.
        let rows = sql.fetch_written(DATA_KEY, &[Arg::user(user_id)]).await?;
        match first(rows) {
            Some(row) => row.bytes(0),
            None => Err(StoreError::Corrupt("data key vanished after insert".into())),
        }
    }

    async fn destroy_data_key(&self, user_id: UserId) -> Result<(), StoreError> {
        let sql = "DELETE FROM user_data_keys WHERE user_id = $1";
        self.sql().execute(sql, &[Arg::user(user_id)]).await?;
        Ok(())
    }
}

#[async_trait]
impl<B: SqlStore> NonceStore for B {
    async fn use_nonce(
        &self,
        scope: &str,
        nonce: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let expired = "DELETE FROM request_nonces WHERE expires_at < $1";
        self.sql().execute(expired, &[Arg::time(now)]).await?;
        let inserted = self
            .sql()
            .execute(
                "INSERT INTO request_nonces (scope, nonce, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (scope, nonce) DO NOTHING",
                &[Arg::Text(scope), Arg::Text(nonce), Arg::time(expires_at)],
            )
            .await?;
        Ok(inserted == 1)
    }
}
