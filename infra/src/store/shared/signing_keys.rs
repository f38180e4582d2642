//! The token signing keys shared by every instance.

use async_trait::async_trait;

use super::{first, micros, Arg, Sql, SqlRow, SqlStore, SqlTx};
use crate::store::{SigningKeyRetirement, SigningKeyStore, StoreError, StoredSigningKey};

#[async_trait]
impl<B: SqlStore> SigningKeyStore for B {
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let sql = "SELECT kid, sealed_private_key, created_at, activates_at, retire_after, \
                   retired_at FROM signing_keys ORDER BY created_at DESC, kid DESC";
        let rows = self.sql().fetch(sql, &[]).await?;
        rows.iter().map(decode).collect()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_first_signing_key(
        &self,
        key: StoredSigningKey,
    ) -> Result<Vec<StoredSigningKey>, StoreError> {
        // Instances starting together must not each add a key. The lock makes the emptiness
        // check and the insert one step; the insert's own snapshot, taken after the lock is
        // granted, sees a key a rival just committed.
        let mut tx = self.sql().begin(&["signing_keys"]).await?;
        tx.execute(
            "INSERT INTO signing_keys (kid, sealed_private_key, created_at) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
            &[
                Arg::Text(&key.kid),
                Arg::Bytes(&key.sealed_private_key),
                Arg::time(key.created_at),
            ],
        )
        .await?;
        tx.commit().await?;
        self.signing_keys().await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        activation: std::time::Duration,
        retention: std::time::Duration,
    ) -> Result<StoredSigningKey, StoreError> {
        let created_at = micros(self.now().await?);
        let activates_at = micros(created_at + activation);
        let mut tx = self.sql().begin(&[]).await?;
        tx.execute(
            "INSERT INTO signing_keys (kid, sealed_private_key, created_at, activates_at) \
             VALUES ($1, $2, $3, $4)",
            &[
                Arg::Text(&key.kid),
                Arg::Bytes(&key.sealed_private_key),
                Arg::time(created_at),
                Arg::time(activates_at),
            ],
        )
        .await?;
        tx.execute(
            "UPDATE signing_keys SET retire_after = $1 WHERE retire_after IS NULL AND kid = \
             (SELECT kid FROM signing_keys WHERE kid <> $2 ORDER BY created_at DESC, kid DESC LIMIT 1)",
            &[Arg::time(micros(activates_at + retention)), Arg::Text(&key.kid)],
        )
        .await?;
        tx.commit().await?;
        Ok(StoredSigningKey {
            created_at,
            activates_at: Some(activates_at),
            retire_after: None,
            retired_at: None,
            ..key.clone()
        })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn retire_signing_key(&self, kid: &str) -> Result<SigningKeyRetirement, StoreError> {
        // One statement, so two retirements racing cannot leave no key to sign with.
        let retired = self
            .sql()
            .execute(
                "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL \
                 AND EXISTS (SELECT 1 FROM signing_keys AS newer WHERE newer.retired_at IS NULL \
                 AND (newer.created_at, newer.kid) > (signing_keys.created_at, signing_keys.kid))",
                &[Arg::Text(kid), Arg::time(self.now().await?)],
            )
            .await?;
        if retired == 1 {
            return Ok(SigningKeyRetirement::Retired);
        }
        let row = first(
            self.sql()
                .fetch_written(
                    "SELECT retired_at FROM signing_keys WHERE kid = $1",
                    &[Arg::Text(kid)],
                )
                .await?,
        );
        Ok(match row.map(|row| row.opt_time(0)).transpose()? {
            None => SigningKeyRetirement::NotFound,
            Some(Some(_)) => SigningKeyRetirement::AlreadyRetired,
            Some(None) => SigningKeyRetirement::Signs,
        })
    }
}

fn decode(row: &impl SqlRow) -> Result<StoredSigningKey, StoreError> {
    Ok(StoredSigningKey {
        kid: row.text(0)?,
        sealed_private_key: row.bytes(1)?,
        created_at: row.time(2)?,
        activates_at: row.opt_time(3)?,
        retire_after: row.opt_time(4)?,
        retired_at: row.opt_time(5)?,
    })
}
