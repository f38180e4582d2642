//! What a user shares and withdraws: profile, phone number, and erasure of it all.
//!
//! The domain sees personal data only sealed (`SealedPersonalData`); sealing with the user's
//! data key happens at the edge, so the log never holds it in clear.

use crate::events::{Authorization, SealedPersonalData, UnionIdSource, UserEvent};
use crate::ids::{AvatarId, UnionId};
use crate::user::{User, UserError};

/// A profile the user shared, sealed, with the names of the fields it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedProfile {
    pub sealed: SealedPersonalData,
    pub fields: Vec<String>,
    /// Older encrypted payloads still carry the unionid.
    pub unionid: Option<UnionId>,
}

/// A fill-in, sealed (the whole profile after it), with what the edge learned about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub sealed: SealedPersonalData,
    pub fields: Vec<String>,
    /// What becomes of the avatar.
    pub avatar: AvatarChange,
    /// The fields this change sets: their earlier review flags no longer apply.
    pub changed: Vec<String>,
    /// Those of them stored but flagged for review (WeChat's check said `review`, or failed).
    pub flagged: Vec<String>,
}

/// What a fill-in does to the profile's avatar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvatarChange {
    /// The avatar stays as it is (the change is about other fields, or names our own URL).
    Keep,
    /// An avatar URL from elsewhere replaces it.
    Elsewhere,
    /// A new upload of ours replaces it.
    Uploaded(AvatarId),
}

/// A sealed profile and the names of its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedProfileFields {
    pub sealed: SealedPersonalData,
    pub fields: Vec<String>,
}

impl User {
    fn usable(&self) -> Result<(), UserError> {
        if !self.is_registered() {
            return Err(UserError::NotRegistered);
        }
        if self.erased {
            return Err(UserError::Erased);
        }
        Ok(())
    }

    /// Legacy `getUserProfile` data, already verified and decrypted at the edge.
    pub fn decide_authorize_profile(
        &self,
        shared: SharedProfile,
    ) -> Result<Vec<UserEvent>, UserError> {
        self.usable()?;
        let mut events = Vec::new();
        match (&self.unionid, shared.unionid) {
            (None, Some(unionid)) => events.push(UserEvent::UnionIdLinked {
                unionid,
                source: UnionIdSource::DecryptedData,
            }),
            (Some(held), Some(given)) if *held != given => return Err(UserError::UnionIdMismatch),
            _ => {}
        }
        events.push(UserEvent::ProfileAuthorized {
            profile: shared.sealed,
            fields: shared.fields,
        });
        Ok(events)
    }

    /// The post-2022 fill-in: nickname and/or avatar typed or chosen by the user.
    pub fn decide_update_profile(
        &self,
        sealed: SealedPersonalData,
        fields: Vec<String>,
    ) -> Result<Vec<UserEvent>, UserError> {
        self.decide_update_profile_checked(ProfileUpdate {
            sealed,
            fields,
            avatar: AvatarChange::Keep,
            changed: Vec::new(),
            flagged: Vec::new(),
        })
    }

    /// The fill-in with what the edge learned about it: the avatar the profile now shows (if
    /// one of ours) and the fields WeChat's content check did not clear.
    pub fn decide_update_profile_checked(
        &self,
        update: ProfileUpdate,
    ) -> Result<Vec<UserEvent>, UserError> {
        self.usable()?;
        let avatar_id = match update.avatar {
            AvatarChange::Keep => self.avatar,
            AvatarChange::Elsewhere => None,
            AvatarChange::Uploaded(avatar_id) => Some(avatar_id),
        };
        // Every `ProfileUpdated` states the flags standing after it, as it states the profile.
        let mut review: Vec<String> = self
            .review
            .iter()
            .filter(|field| !update.changed.contains(field))
            .chain(&update.flagged)
            .cloned()
            .collect();
        review.sort();
        review.dedup();
        Ok(vec![UserEvent::ProfileUpdated {
            profile: update.sealed,
            fields: update.fields,
            avatar_id,
            review,
        }])
    }

    /// WeChat's image check rejected `avatar_id`. Recorded once (WeChat retries its push), and
    /// nothing for an erased user (the image went with the erasure). When the avatar is still
    /// the profile's, `without_it` (the profile without `avatar_url`, sealed at the edge)
    /// replaces the profile; a rejection of an avatar replaced since is recorded and changes
    /// nothing else.
    pub fn decide_reject_avatar(
        &self,
        avatar_id: AvatarId,
        label: u32,
        without_it: Option<SharedProfileFields>,
    ) -> Result<Vec<UserEvent>, UserError> {
        if !self.is_registered() {
            return Err(UserError::NotRegistered);
        }
        if self.erased || self.last_rejected_avatar == Some(avatar_id) {
            return Ok(Vec::new());
        }
        let (profile, fields) = match without_it {
            Some(shared) if self.avatar == Some(avatar_id) => (Some(shared.sealed), shared.fields),
            _ => (None, Vec::new()),
        };
        Ok(vec![UserEvent::AvatarRejected {
            avatar_id,
            label,
            profile,
            fields,
        }])
    }

    /// An uploaded avatar becomes the profile's: `sealed` is the whole profile with its
    /// `avatar_url` naming the image `avatar_id`, already stored. The image it replaces is
    /// `self.avatar`, which the caller deletes once this is recorded.
    pub fn decide_set_avatar(
        &self,
        sealed: SealedPersonalData,
        fields: Vec<String>,
        avatar_id: AvatarId,
    ) -> Result<Vec<UserEvent>, UserError> {
        self.decide_update_profile_checked(ProfileUpdate {
            sealed,
            fields,
            avatar: AvatarChange::Uploaded(avatar_id),
            changed: vec!["avatar_url".into()],
            flagged: Vec::new(),
        })
    }

    pub fn decide_bind_phone(
        &self,
        sealed: SealedPersonalData,
    ) -> Result<Vec<UserEvent>, UserError> {
        self.usable()?;
        Ok(vec![UserEvent::PhoneNumberBound { phone: sealed }])
    }

    pub fn decide_withdraw(
        &self,
        authorization: Authorization,
    ) -> Result<Vec<UserEvent>, UserError> {
        self.usable()?;
        let held = match authorization {
            Authorization::Profile => self.profile.is_some(),
            Authorization::Phone => self.phone.is_some(),
        };
        if !held {
            return Err(UserError::NotAuthorized);
        }
        Ok(vec![UserEvent::AuthorizationRevoked { authorization }])
    }

    /// Erasure is final and idempotent: erasing an erased user records nothing.
    pub fn decide_erase(&self) -> Result<Vec<UserEvent>, UserError> {
        if !self.is_registered() {
            return Err(UserError::NotRegistered);
        }
        if self.erased {
            return Ok(Vec::new());
        }
        Ok(vec![UserEvent::UserErased {}])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AppId, OpenId, UserId};
    use crate::user::RecordWeChatLogin;
    use uuid::Uuid;

    fn registered() -> Vec<UserEvent> {
        User::default()
            .decide_login(&RecordWeChatLogin {
                new_user_id: UserId::from_uuid(Uuid::from_u128(1)),
                appid: AppId::parse("wx0000000000000001").unwrap(),
                openid: OpenId::parse("o1").unwrap(),
                unionid: None,
                source: UnionIdSource::Code2Session,
            })
            .unwrap()
    }

    fn sealed(text: &str) -> SealedPersonalData {
        SealedPersonalData(text.to_owned())
    }

    fn then(history: &[UserEvent], more: Vec<UserEvent>) -> Vec<UserEvent> {
        [history.to_vec(), more].concat()
    }

    #[test]
    fn an_authorized_profile_with_a_unionid_links_it() {
        let history = registered();
        let events = User::replay(&history)
            .decide_authorize_profile(SharedProfile {
                sealed: sealed("p1"),
                fields: vec!["nickname".into()],
                unionid: Some(UnionId::parse("u1").unwrap()),
            })
            .unwrap();
        assert!(matches!(
            events[0],
            UserEvent::UnionIdLinked {
                source: UnionIdSource::DecryptedData,
                ..
            }
        ));
        let user = User::replay(&then(&history, events));
        assert_eq!(user.profile, Some(sealed("p1")));
    }

    #[test]
    fn withdrawing_needs_the_authorization_and_hides_it() {
        let history = registered();
        assert_eq!(
            User::replay(&history).decide_withdraw(Authorization::Phone),
            Err(UserError::NotAuthorized)
        );
        let bound = User::replay(&history)
            .decide_bind_phone(sealed("ph"))
            .unwrap();
        let history = then(&history, bound);
        let withdrawn = User::replay(&history)
            .decide_withdraw(Authorization::Phone)
            .unwrap();
        let user = User::replay(&then(&history, withdrawn));
        assert_eq!(user.phone, None);
    }

    fn with_avatar(history: &[UserEvent], avatar: AvatarId) -> Vec<UserEvent> {
        let update = User::replay(history)
            .decide_set_avatar(
                sealed("with-avatar"),
                vec!["avatar_url".into(), "nickname".into()],
                avatar,
            )
            .unwrap();
        then(history, update)
    }

    fn without_avatar() -> Option<SharedProfileFields> {
        Some(SharedProfileFields {
            sealed: sealed("without-avatar"),
            fields: vec!["nickname".into()],
        })
    }

    #[test]
    fn a_rejected_current_avatar_leaves_the_profile() {
        let avatar = AvatarId::from_uuid(Uuid::from_u128(10));
        let given = with_avatar(&registered(), avatar);
        let when = User::replay(&given)
            .decide_reject_avatar(avatar, 20002, without_avatar())
            .unwrap();
        assert_eq!(
            when,
            vec![UserEvent::AvatarRejected {
                avatar_id: avatar,
                label: 20002,
                profile: Some(sealed("without-avatar")),
                fields: vec!["nickname".into()],
            }]
        );
        let user = User::replay(&then(&given, when));
        assert_eq!(user.profile, Some(sealed("without-avatar")));
        assert_eq!(user.avatar, None);
        // WeChat's retry of the same verdict records nothing more.
        assert!(user
            .decide_reject_avatar(avatar, 20002, without_avatar())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_rejected_replaced_avatar_is_recorded_and_changes_nothing() {
        let (old, new) = (
            AvatarId::from_uuid(Uuid::from_u128(10)),
            AvatarId::from_uuid(Uuid::from_u128(11)),
        );
        let given = with_avatar(&with_avatar(&registered(), old), new);
        let when = User::replay(&given)
            .decide_reject_avatar(old, 21000, without_avatar())
            .unwrap();
        assert_eq!(
            when,
            vec![UserEvent::AvatarRejected {
                avatar_id: old,
                label: 21000,
                profile: None,
                fields: Vec::new(),
            }]
        );
        let user = User::replay(&then(&given, when));
        assert_eq!(user.profile, Some(sealed("with-avatar")));
        assert_eq!(user.avatar, Some(new));
    }

    #[test]
    fn a_nickname_change_keeps_the_avatar_and_records_the_review() {
        let avatar = AvatarId::from_uuid(Uuid::from_u128(10));
        let given = with_avatar(&registered(), avatar);
        let when = User::replay(&given)
            .decide_update_profile(sealed("renamed"), vec!["nickname".into()])
            .unwrap();
        assert!(matches!(
            &when[0],
            UserEvent::ProfileUpdated { avatar_id: Some(a), review, .. } if *a == avatar && review.is_empty()
        ));
        let erased = then(&given, vec![UserEvent::UserErased {}]);
        assert!(User::replay(&erased)
            .decide_reject_avatar(avatar, 20002, without_avatar())
            .unwrap()
            .is_empty());
        assert_eq!(
            User::default().decide_reject_avatar(avatar, 20002, None),
            Err(UserError::NotRegistered)
        );
    }

    #[test]
    fn a_review_flag_stands_until_its_field_changes_again() {
        let update = |avatar, changed: &[&str], flagged: &[&str]| ProfileUpdate {
            sealed: sealed("p"),
            fields: vec!["nickname".into(), "avatar_url".into()],
            avatar,
            changed: changed.iter().map(|f| f.to_string()).collect(),
            flagged: flagged.iter().map(|f| f.to_string()).collect(),
        };
        let review_of = |events: &[UserEvent]| match &events[0] {
            UserEvent::ProfileUpdated { review, .. } => review.clone(),
            other => panic!("{other:?}"),
        };
        let given = registered();
        let flagged = User::replay(&given)
            .decide_update_profile_checked(update(AvatarChange::Keep, &["nickname"], &["nickname"]))
            .unwrap();
        assert_eq!(review_of(&flagged), ["nickname"]);
        let given = then(&given, flagged);
        // An upload, or an avatar URL from elsewhere, leaves the nickname's flag standing.
        let avatar = AvatarId::from_uuid(Uuid::from_u128(20));
        let uploaded = User::replay(&given)
            .decide_set_avatar(sealed("p"), vec![], avatar)
            .unwrap();
        assert_eq!(review_of(&uploaded), ["nickname"]);
        let elsewhere = User::replay(&given)
            .decide_update_profile_checked(update(AvatarChange::Elsewhere, &["avatar_url"], &[]))
            .unwrap();
        assert_eq!(review_of(&elsewhere), ["nickname"]);
        // A new nickname that passes clears it; a withdrawn profile takes it along.
        let cleared = User::replay(&given)
            .decide_update_profile_checked(update(AvatarChange::Keep, &["nickname"], &[]))
            .unwrap();
        assert!(review_of(&cleared).is_empty());
        let withdrawn = User::replay(&given)
            .decide_withdraw(Authorization::Profile)
            .unwrap();
        assert!(User::replay(&then(&given, withdrawn)).review.is_empty());
    }

    #[test]
    fn the_newest_upload_is_the_avatar_until_erasure() {
        let first = AvatarId::from_uuid(Uuid::from_u128(11));
        let second = AvatarId::from_uuid(Uuid::from_u128(12));
        let history = registered();
        let uploaded = User::replay(&history)
            .decide_set_avatar(sealed("p1"), vec!["avatar_url".into()], first)
            .unwrap();
        let history = then(&history, uploaded);
        assert_eq!(User::replay(&history).avatar, Some(first));
        // A nickname alone keeps the image: the next upload or erasure still finds it.
        let renamed = User::replay(&history)
            .decide_update_profile(sealed("p2"), vec!["nickname".into()])
            .unwrap();
        let history = then(&history, renamed);
        assert_eq!(User::replay(&history).avatar, Some(first));
        let replaced = User::replay(&history)
            .decide_set_avatar(sealed("p3"), vec!["avatar_url".into()], second)
            .unwrap();
        let history = then(&history, replaced);
        assert_eq!(User::replay(&history).avatar, Some(second));
        let erased = User::replay(&history).decide_erase().unwrap();
        let user = User::replay(&then(&history, erased));
        assert_eq!(user.avatar, None);
        assert_eq!(
            user.decide_set_avatar(sealed("p4"), vec![], first),
            Err(UserError::Erased)
        );
    }

    #[test]
    fn an_erased_user_shares_nothing_more_and_cannot_log_in() {
        let history = registered();
        let erased = User::replay(&history).decide_erase().unwrap();
        assert_eq!(erased, vec![UserEvent::UserErased {}]);
        let history = then(&history, erased);
        let user = User::replay(&history);
        assert!(user.decide_erase().unwrap().is_empty());
        assert_eq!(
            user.decide_update_profile(sealed("p"), vec![]),
            Err(UserError::Erased)
        );
        assert_eq!(
            user.decide_login(&RecordWeChatLogin {
                new_user_id: UserId::from_uuid(Uuid::from_u128(2)),
                appid: AppId::parse("wx0000000000000001").unwrap(),
                openid: OpenId::parse("o1").unwrap(),
                unionid: None,
                source: UnionIdSource::Code2Session,
            }),
            Err(UserError::Erased)
        );
    }
}
