//! Uploaded avatar images, sealed under their owner's data key (migration 0016).

use async_trait::async_trait;
use domain::{AvatarId, UserId};

use super::{first, micros, Arg, Sql, SqlRow, SqlStore};
use crate::store::{AvatarStore, StoreError, StoredAvatar};

#[async_trait]
impl<B: SqlStore> AvatarStore for B {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn insert_avatar(&self, avatar: &StoredAvatar) -> Result<(), StoreError> {
        self.sql()
            .execute(
                "INSERT INTO avatars (avatar_id, user_id, content_type, sealed_image, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    Arg::uuid(avatar.avatar_id.as_uuid()),
                    Arg::user(avatar.user_id),
                    Arg::Text(&avatar.content_type),
                    Arg::Bytes(&avatar.sealed_image),
                    Arg::time(micros(avatar.created_at)),
                ],
            )
            .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn avatar(&self, avatar_id: AvatarId) -> Result<Option<StoredAvatar>, StoreError> {
        let rows = self
            .sql()
            .fetch(
                "SELECT user_id, content_type, sealed_image, created_at FROM avatars \
                 WHERE avatar_id = $1",
                &[Arg::uuid(avatar_id.as_uuid())],
            )
            .await?;
        first(rows)
            .map(|row| {
                Ok(StoredAvatar {
                    avatar_id,
                    user_id: row.user(0)?,
                    content_type: row.text(1)?,
                    sealed_image: row.bytes(2)?,
                    created_at: row.time(3)?,
                })
            })
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_avatar(&self, avatar_id: AvatarId) -> Result<bool, StoreError> {
        let deleted = self
            .sql()
            .execute(
                "DELETE FROM avatars WHERE avatar_id = $1",
                &[Arg::uuid(avatar_id.as_uuid())],
            )
            .await?;
        Ok(deleted > 0)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_avatars_of(&self, user_id: UserId) -> Result<u64, StoreError> {
        self.sql()
            .execute(
                "DELETE FROM avatars WHERE user_id = $1",
                &[Arg::user(user_id)],
            )
            .await
    }
}
