//! A new user's data key is written by the append that registers them (`SideWrite::DataKey`):
//! it commits with the registration or not at all, never replaces a key, and an erased user
//! stays keyless.

// A failed unwrap is a failed test; the helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

use domain::{AppId, Claim, OpenId, UserId};
use infra::crypto::MasterKey;
use infra::personal_data::{LookupIndex, PersonalData};
use infra::store::{AppendBatch, AppendError, ClaimKey, ExpectedVersion, NewEvent, StoreError};
use serde_json::json;
use testkit::{both_backends, TestDb as Db};
use uuid::Uuid;

both_backends!(
    Db:
    a_data_key_commits_with_its_registration,
    a_refused_registration_leaves_no_data_key,
    a_second_data_key_fails_the_append_and_replaces_nothing,
    an_erased_user_stays_keyless,
);

fn event(event_type: &str) -> NewEvent {
    testkit::bare_event(event_type)
}

fn account(index: &LookupIndex, openid: &str) -> ClaimKey {
    index.claim(&Claim::WeChatAccount {
        appid: AppId::parse("wx0123456789abcdef").unwrap(),
        openid: OpenId::parse(openid).unwrap(),
    })
}

/// What a login registering `user` as `openid` appends, with the user's new data key.
fn registration(index: &LookupIndex, user: UserId, openid: &str, sealed: Vec<u8>) -> AppendBatch {
    AppendBatch::default()
        .stream(
            user.stream(),
            ExpectedVersion::NoStream,
            vec![event("UserRegistered")],
        )
        .claim(account(index, openid), user)
        .data_key(user, sealed)
}

fn new_user() -> UserId {
    UserId::from_uuid(Uuid::now_v7())
}

async fn a_data_key_commits_with_its_registration(db: Db) {
    let master = MasterKey::generate();
    let (index, data) = (LookupIndex::new(&master), PersonalData::new(&master));
    let user = new_user();
    let (key, sealed) = data.new_key(user);
    db.store
        .append(registration(&index, user, "o-new", sealed.clone()))
        .await
        .unwrap();
    assert_eq!(db.store.data_key(user).await.unwrap(), Some(sealed));
    // The key stored is the key the login sealed with.
    let stored = data.key(db.store.as_ref(), user).await.unwrap().unwrap();
    let field = key.seal(&json!("a nickname"));
    assert_eq!(stored.open(&field.0).unwrap(), json!("a nickname"));
}

/// A registration that loses the race for its claim, or for its stream, leaves no key.
async fn a_refused_registration_leaves_no_data_key(db: Db) {
    let master = MasterKey::generate();
    let (index, data) = (LookupIndex::new(&master), PersonalData::new(&master));
    let winner = new_user();
    db.store
        .append(registration(&index, winner, "o-1", data.new_key(winner).1))
        .await
        .unwrap();

    let loser = new_user();
    let refused = db
        .store
        .append(registration(&index, loser, "o-1", data.new_key(loser).1))
        .await;
    assert!(
        matches!(refused, Err(AppendError::ClaimTaken { .. })),
        "{refused:?}"
    );
    assert_eq!(db.store.data_key(loser).await.unwrap(), None);

    let moved = AppendBatch::default()
        .stream(winner.stream(), ExpectedVersion::NoStream, vec![event("X")])
        .data_key(loser, data.new_key(loser).1);
    let refused = db.store.append(moved).await;
    assert!(
        matches!(refused, Err(AppendError::VersionConflict(_))),
        "{refused:?}"
    );
    assert_eq!(db.store.data_key(loser).await.unwrap(), None);
}

/// A user id with a key already (which fresh v7 ids never have) fails the append: nothing of
/// it is written, and the stored key stays.
async fn a_second_data_key_fails_the_append_and_replaces_nothing(db: Db) {
    let master = MasterKey::generate();
    let (index, data) = (LookupIndex::new(&master), PersonalData::new(&master));
    let user = new_user();
    let first = data.new_key(user).1;
    db.store.insert_data_key(user, &first).await.unwrap();

    let second = db
        .store
        .append(registration(&index, user, "o-2", data.new_key(user).1))
        .await;
    assert!(
        matches!(second, Err(AppendError::Store(StoreError::Database(_)))),
        "{second:?}"
    );
    assert_eq!(db.store.data_key(user).await.unwrap(), Some(first));
    assert!(db
        .store
        .load_stream(&user.stream())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        db.store.find_claim(&account(&index, "o-2")).await.unwrap(),
        None
    );
}

/// No append makes a key for a user whose stream holds `UserErased`.
async fn an_erased_user_stays_keyless(db: Db) {
    let master = MasterKey::generate();
    let (index, data) = (LookupIndex::new(&master), PersonalData::new(&master));
    let user = new_user();
    db.store
        .append(registration(&index, user, "o-3", data.new_key(user).1))
        .await
        .unwrap();
    db.store
        .append(
            AppendBatch::default()
                .stream(
                    user.stream(),
                    ExpectedVersion::Exactly(1),
                    vec![event("UserErased")],
                )
                .release_claims_of(user),
        )
        .await
        .unwrap();
    assert_eq!(db.store.data_key(user).await.unwrap(), None);

    let late = AppendBatch::default()
        .stream(
            user.stream(),
            ExpectedVersion::Exactly(2),
            vec![event("Late")],
        )
        .data_key(user, data.new_key(user).1);
    // Whatever the append answers, the key is not stored.
    let _ = db.store.append(late).await;
    assert_eq!(db.store.data_key(user).await.unwrap(), None);
}
