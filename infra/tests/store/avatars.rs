//! Avatar images: stored, read back, deleted one by one, and gone with their owner's erasure.

use chrono::{SubsecRound, Utc};
use domain::{AvatarId, UserId};
use infra::store::{ExpectedVersion, StoredAvatar};
use uuid::Uuid;

use super::Db;

fn avatar(user_id: UserId) -> StoredAvatar {
    StoredAvatar {
        avatar_id: AvatarId::from_uuid(Uuid::now_v7()),
        user_id,
        content_type: "image/png".into(),
        sealed_image: vec![1, 0, 255, 7],
        created_at: Utc::now().trunc_subsecs(6),
    }
}

pub async fn avatars_go_when_deleted_or_their_owner_is_erased(db: Db) {
    let store = db.store.as_ref();
    let (gone, kept) = (super::new_user(), super::new_user());
    let (first, second, other) = (avatar(gone), avatar(gone), avatar(kept));
    for image in [&first, &second, &other] {
        store.insert_avatar(image).await.unwrap();
    }
    assert_eq!(
        store.avatar(first.avatar_id).await.unwrap(),
        Some(first.clone())
    );
    let unknown = AvatarId::from_uuid(Uuid::now_v7());
    assert_eq!(store.avatar(unknown).await.unwrap(), None);

    assert!(store.delete_avatar(first.avatar_id).await.unwrap());
    assert!(!store.delete_avatar(first.avatar_id).await.unwrap());
    assert_eq!(store.avatar(first.avatar_id).await.unwrap(), None);

    // The append of `UserErased` deletes the user's images in its transaction.
    store
        .append(super::one(
            &gone.stream(),
            ExpectedVersion::Any,
            vec![super::event("UserErased", serde_json::json!({}))],
        ))
        .await
        .unwrap();
    assert_eq!(store.avatar(second.avatar_id).await.unwrap(), None);
    assert_eq!(
        store.avatar(other.avatar_id).await.unwrap(),
        Some(other.clone())
    );

    assert_eq!(store.delete_avatars_of(kept).await.unwrap(), 1);
    assert_eq!(store.delete_avatars_of(kept).await.unwrap(), 0);
    assert_eq!(store.avatar(other.avatar_id).await.unwrap(), None);
}
