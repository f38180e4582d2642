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
        self.usable()?;
        Ok(vec![UserEvent::ProfileUpdated {
            profile: sealed,
            fields,
            avatar_id: None,
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
        self.usable()?;
        Ok(vec![UserEvent::ProfileUpdated {
            profile: sealed,
            fields,
            avatar_id: Some(avatar_id),
        }])
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
