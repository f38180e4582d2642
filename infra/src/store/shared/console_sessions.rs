//! Console sessions (migration 0018).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{first, micros, Arg, Sql, SqlRow, SqlStore, SqlTx};
use crate::api_keys::StoredApiKey;
use crate::store::console_sessions::{
    ConsoleSessionBounds, ConsoleSessionStore, StoredConsoleSession,
};
use crate::store::StoreError;

#[async_trait]
impl<B: SqlStore> ConsoleSessionStore for B {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_console_session(
        &self,
        session: &StoredConsoleSession,
        bounds: ConsoleSessionBounds,
    ) -> Result<(), StoreError> {
        let scopes = session
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut tx = self.sql().begin(&["console_sessions"]).await?;
        tx.execute(
            "DELETE FROM console_sessions WHERE last_seen_at < $1 OR created_at < $2",
            &[
                Arg::time(micros(bounds.idle_before)),
                Arg::time(micros(bounds.created_before)),
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO console_sessions \
             (token_hash, key_id, scopes, bootstrap_check, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                Arg::Bytes(&session.token_hash),
                Arg::Text(&session.key_id),
                Arg::Text(&scopes),
                Arg::OptBytes(session.bootstrap_check.as_deref()),
                Arg::time(micros(session.created_at)),
                Arg::time(micros(session.last_seen_at)),
            ],
        )
        .await?;
        tx.execute(
            "DELETE FROM console_sessions WHERE key_id = $1 AND token_hash NOT IN \
             (SELECT token_hash FROM console_sessions WHERE key_id = $1 \
              ORDER BY created_at DESC, token_hash DESC LIMIT $2)",
            &[
                Arg::Text(&session.key_id),
                Arg::Int(i64::from(bounds.max_per_key)),
            ],
        )
        .await?;
        tx.commit().await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn console_session(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<StoredConsoleSession>, StoreError> {
        let rows = self
            .sql()
            .fetch(
                "SELECT key_id, scopes, bootstrap_check, created_at, last_seen_at \
                 FROM console_sessions WHERE token_hash = $1",
                &[Arg::Bytes(token_hash)],
            )
            .await?;
        first(rows)
            .map(|row| {
                Ok(StoredConsoleSession {
                    token_hash: token_hash.to_vec(),
                    key_id: row.text(0)?,
                    scopes: StoredApiKey::scopes_from_text(&row.text(1)?)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    bootstrap_check: row.opt_bytes(2)?,
                    created_at: row.time(3)?,
                    last_seen_at: row.time(4)?,
                })
            })
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn touch_console_session(
        &self,
        token_hash: &[u8],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.sql()
            .execute(
                "UPDATE console_sessions SET last_seen_at = $2 WHERE token_hash = $1",
                &[Arg::Bytes(token_hash), Arg::time(micros(at))],
            )
            .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_console_session(&self, token_hash: &[u8]) -> Result<bool, StoreError> {
        let deleted = self
            .sql()
            .execute(
                "DELETE FROM console_sessions WHERE token_hash = $1",
                &[Arg::Bytes(token_hash)],
            )
            .await?;
        Ok(deleted > 0)
    }
}
