//! The one-time log rewrite (see `LogRewrite`): one write transaction per call.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::UserId;

use super::side_writes::PUT_PHONE_INDEX;
use super::{Arg, Sql, SqlRow, SqlStore, SqlTx};
use crate::store::prepared::{metadata_to_json, schema_version_to_db};
use crate::store::{LogRewrite, OneTimeLock, RecordedEvent, StoreError, StoredClaim};

#[async_trait]
impl<B: SqlStore> LogRewrite for B {
    async fn one_time_done(&self, name: &str) -> Result<bool, StoreError> {
        let rows = self
            .sql()
            .fetch_written(
                "SELECT done_at FROM one_time_migrations WHERE name = $1",
                &[Arg::Text(name)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn record_one_time(&self, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.sql()
            .execute(
                "INSERT INTO one_time_migrations (name, done_at) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
                &[Arg::Text(name), Arg::time(at)],
            )
            .await?;
        Ok(())
    }

    async fn forget_one_time(&self, name: &str) -> Result<(), StoreError> {
        self.sql()
            .execute(
                "DELETE FROM one_time_migrations WHERE name = $1",
                &[Arg::Text(name)],
            )
            .await?;
        Ok(())
    }

    async fn one_time_lock(&self) -> Result<OneTimeLock, StoreError> {
        SqlStore::one_time_lock(self).await
    }

    async fn compact(&self) -> Result<(), StoreError> {
        SqlStore::compact(self).await
    }

    async fn rewrite_events(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let mut tx = self.sql().begin(&[]).await?;
        for event in events {
            let metadata = metadata_to_json(&event.metadata)?;
            tx.execute(
                "UPDATE events SET payload = $1, metadata = $2, schema_version = $3 \
                 WHERE position = $4",
                &[
                    Arg::json(&event.payload),
                    Arg::json(&metadata),
                    Arg::Int(schema_version_to_db(event.schema_version)?.into()),
                    Arg::Int(event.position),
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn claims(&self) -> Result<Vec<StoredClaim>, StoreError> {
        let sql = "SELECT kind, value, user_id FROM claims";
        let rows = self.sql().fetch_written(sql, &[]).await?;
        rows.iter().map(claim).collect()
    }

    async fn rekey_claims(&self, changes: &[(String, String, String)]) -> Result<(), StoreError> {
        let mut tx = self.sql().begin(&[]).await?;
        for (kind, old, new) in changes {
            tx.execute(
                "UPDATE claims SET value = $3 WHERE kind = $1 AND value = $2",
                &[Arg::Text(kind), Arg::Text(old), Arg::Text(new)],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn put_phone_indexes(&self, entries: &[(UserId, String)]) -> Result<(), StoreError> {
        let mut tx = self.sql().begin(&[]).await?;
        for (user, hash) in entries {
            tx.execute(PUT_PHONE_INDEX, &[Arg::user(*user), Arg::Text(hash)])
                .await?;
        }
        tx.commit().await
    }

    async fn session_key_accounts(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.sql()
            .fetch_written("SELECT appid, openid FROM wechat_session_keys", &[])
            .await?
            .iter()
            .map(|row| Ok((row.text(0)?, row.text(1)?)))
            .collect()
    }

    async fn drop_session_keys(&self, accounts: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.sql().begin(&[]).await?;
        for (appid, openid) in accounts {
            tx.execute(
                "DELETE FROM wechat_session_keys WHERE appid = $1 AND openid = $2",
                &[Arg::Text(appid), Arg::Text(openid)],
            )
            .await?;
        }
        tx.commit().await
    }
}

fn claim(row: &impl SqlRow) -> Result<StoredClaim, StoreError> {
    Ok(StoredClaim {
        kind: row.text(0)?,
        value: row.text(1)?,
        user_id: row.user(2)?,
    })
}
