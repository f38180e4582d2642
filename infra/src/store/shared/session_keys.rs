//! Sealed WeChat `session_key`s, one per account.

use async_trait::async_trait;
use chrono::Utc;

use super::side_writes::PUT_SESSION_KEY;
use super::{first, Arg, Sql, SqlRow, SqlStore};
use crate::store::{AccountKey, SessionKeyVault, StoreError};

#[async_trait]
impl<B: SqlStore> SessionKeyVault for B {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_session_key(
        &self,
        appid: &str,
        account: &AccountKey,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.sql()
            .execute(
                PUT_SESSION_KEY,
                &[
                    Arg::Text(appid),
                    Arg::Text(account.as_str()),
                    Arg::Bytes(sealed),
                    Arg::time(Utc::now()),
                ],
            )
            .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn session_key(
        &self,
        appid: &str,
        account: &AccountKey,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self
            .sql()
            .fetch(
                "SELECT sealed FROM wechat_session_keys WHERE appid = $1 AND openid = $2",
                &[Arg::Text(appid), Arg::Text(account.as_str())],
            )
            .await?;
        first(rows).map(|row| row.bytes(0)).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_session_key(
        &self,
        appid: &str,
        account: &AccountKey,
    ) -> Result<(), StoreError> {
        self.sql()
            .execute(
                "DELETE FROM wechat_session_keys WHERE appid = $1 AND openid = $2",
                &[Arg::Text(appid), Arg::Text(account.as_str())],
            )
            .await?;
        Ok(())
    }
}
