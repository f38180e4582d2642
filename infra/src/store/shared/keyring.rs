//! The keyring, and re-sealing every sealed row under a new sealing root.

use async_trait::async_trait;
use domain::UserId;

use super::{Arg, Sql, SqlRow, SqlStore, SqlTx};
use crate::store::{KeyringEntry, KeyringRewrap, KeyringStore, Reseal, SealedRow, StoreError};

const INSERT_ENTRY: &str = "INSERT INTO keyring (name, sealed_key, created_at) \
                            VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";

const REWRAP_ENTRY: &str = "UPDATE keyring SET sealed_key = $3 WHERE name = $1 AND sealed_key = $2";

fn entry(row: &impl SqlRow) -> Result<KeyringEntry, StoreError> {
    Ok(KeyringEntry {
        name: row.text(0)?,
        sealed_key: row.bytes(1)?,
        created_at: row.time(2)?,
    })
}

#[async_trait]
impl<B: SqlStore> KeyringStore for B {
    async fn keyring_entries(&self) -> Result<Vec<KeyringEntry>, StoreError> {
        let sql = "SELECT name, sealed_key, created_at FROM keyring ORDER BY name";
        let rows = self.sql().fetch(sql, &[]).await?;
        rows.iter().map(entry).collect()
    }

    async fn insert_keyring_entry(&self, entry: &KeyringEntry) -> Result<Vec<u8>, StoreError> {
        // An instance starting at the same moment may have inserted first: theirs is kept, and
        // read back (on the writer, whose next statement sees their commit).
        self.sql().execute(INSERT_ENTRY, &entry_args(entry)).await?;
        let rows = self
            .sql()
            .fetch_written(
                "SELECT sealed_key FROM keyring WHERE name = $1",
                &[Arg::Text(&entry.name)],
            )
            .await?;
        match rows.first() {
            Some(row) => row.bytes(0),
            None => Err(StoreError::Corrupt(format!(
                "keyring entry {} vanished after insert",
                entry.name
            ))),
        }
    }

    async fn rewrap_keyring(&self, rewraps: &[KeyringRewrap]) -> Result<bool, StoreError> {
        let mut tx = self.sql().begin(&[]).await?;
        if !rewrap(&mut tx, rewraps).await? {
            // Dropping the transaction rolls it back: all or nothing.
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn sealed_rows(&self) -> Result<Vec<(SealedRow, Vec<u8>)>, StoreError> {
        let mut rows = Vec::new();
        for row in self
            .sql()
            .fetch_written("SELECT appid, openid, sealed FROM wechat_session_keys", &[])
            .await?
        {
            let (appid, openid) = (row.text(0)?, row.text(1)?);
            rows.push((SealedRow::SessionKey { appid, openid }, row.bytes(2)?));
        }
        for row in self
            .sql()
            .fetch_written("SELECT kid, sealed_private_key FROM signing_keys", &[])
            .await?
        {
            rows.push((SealedRow::SigningKey { kid: row.text(0)? }, row.bytes(1)?));
        }
        for row in self
            .sql()
            .fetch_written("SELECT user_id, sealed_key FROM user_data_keys", &[])
            .await?
        {
            let user_id = row.user(0)?.to_string();
            rows.push((SealedRow::DataKey { user_id }, row.bytes(1)?));
        }
        Ok(rows)
    }

    async fn reseal(&self, plan: &Reseal) -> Result<bool, StoreError> {
        const SEALED: [&str; 3] = ["wechat_session_keys", "signing_keys", "user_data_keys"];
        // Logins and new users must wait: a row added after the plan was read is counted below.
        let mut tx = self
            .sql()
            .begin(&["keyring", SEALED[0], SEALED[1], SEALED[2]])
            .await?;
        for (table, expected) in SEALED.into_iter().zip(plan.counts()) {
            let rows = tx
                .fetch(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .await?;
            if rows.first().map(|row| row.int(0)).transpose()? != Some(expected) {
                return Ok(false);
            }
        }
        for reseal in &plan.rows {
            let (from, to) = (Arg::Bytes(&reseal.from), Arg::Bytes(&reseal.to));
            let updated = match &reseal.row {
                SealedRow::SessionKey { appid, openid } => {
                    tx.execute(
                        "UPDATE wechat_session_keys SET sealed = $4 \
                         WHERE appid = $1 AND openid = $2 AND sealed = $3",
                        &[Arg::Text(appid), Arg::Text(openid), from, to],
                    )
                    .await?
                }
                SealedRow::SigningKey { kid } => {
                    tx.execute(
                        "UPDATE signing_keys SET sealed_private_key = $3 \
                         WHERE kid = $1 AND sealed_private_key = $2",
                        &[Arg::Text(kid), from, to],
                    )
                    .await?
                }
                SealedRow::DataKey { user_id } => {
                    let user = uuid::Uuid::try_parse(user_id)
                        .map(UserId::from_uuid)
                        .map_err(|e| StoreError::Corrupt(format!("user id {user_id:?}: {e}")))?;
                    tx.execute(
                        "UPDATE user_data_keys SET sealed_key = $3 \
                         WHERE user_id = $1 AND sealed_key = $2",
                        &[Arg::user(user), from, to],
                    )
                    .await?
                }
            };
            if updated != 1 {
                return Ok(false);
            }
        }
        if !rewrap(&mut tx, &plan.rewraps).await? {
            return Ok(false);
        }
        if let Some(entry) = &plan.insert {
            if tx.execute(INSERT_ENTRY, &entry_args(entry)).await? != 1 {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}

fn entry_args(entry: &KeyringEntry) -> [Arg<'_>; 3] {
    [
        Arg::Text(&entry.name),
        Arg::Bytes(&entry.sealed_key),
        Arg::time(entry.created_at),
    ]
}

/// Applies the rewraps inside `tx`; false when an entry no longer holds what was expected.
async fn rewrap<T: SqlTx>(tx: &mut T, rewraps: &[KeyringRewrap]) -> Result<bool, StoreError> {
    for rewrap in rewraps {
        let args = [
            Arg::Text(&rewrap.name),
            Arg::Bytes(&rewrap.from),
            Arg::Bytes(&rewrap.to),
        ];
        if tx.execute(REWRAP_ENTRY, &args).await? != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}
