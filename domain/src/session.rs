//! The `Session` aggregate: one login and its refresh-token lifecycle.

use crate::events::{RevocationReason, SessionEvent};
use crate::ids::{AppId, SessionId, UserId};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Session {
    #[default]
    NotStarted,
    Active {
        id: SessionId,
        user_id: UserId,
        appid: AppId,
        /// The refresh-token generation currently valid; earlier ones were rotated away.
        generation: u32,
        /// This session's login registered the user.
        is_new_user: bool,
    },
    Ended {
        id: SessionId,
        user_id: UserId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session does not exist")]
    NotFound,
    #[error("the session has ended")]
    Ended,
    #[error("the refresh token was never issued")]
    UnknownGeneration,
    #[error("the session has already started")]
    AlreadyStarted,
}

impl Session {
    pub fn evolve(self, event: &SessionEvent) -> Self {
        match (self, event) {
            (
                Self::NotStarted,
                SessionEvent::UserLoggedIn {
                    session_id,
                    user_id,
                    appid,
                    is_new_user,
                    ..
                },
            ) => Self::Active {
                id: *session_id,
                user_id: *user_id,
                appid: appid.clone(),
                generation: 0,
                is_new_user: *is_new_user,
            },
            (
                Self::Active {
                    id,
                    user_id,
                    appid,
                    is_new_user,
                    ..
                },
                SessionEvent::SessionRefreshed { generation },
            ) => Self::Active {
                id,
                user_id,
                appid,
                generation: *generation,
                is_new_user,
            },
            (
                Self::Active { id, user_id, .. },
                SessionEvent::UserLoggedOut {} | SessionEvent::SessionRevoked { .. },
            ) => Self::Ended { id, user_id },
            // A stream only ever holds events this aggregate decided, in this order.
            (state, _) => state,
        }
    }

    pub fn replay<'a>(events: impl IntoIterator<Item = &'a SessionEvent>) -> Self {
        events.into_iter().fold(Self::default(), Self::evolve)
    }

    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active { .. })
    }

    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Self::NotStarted => None,
            Self::Active { user_id, .. } | Self::Ended { user_id, .. } => Some(*user_id),
        }
    }

    pub fn decide_start(&self, login: SessionEvent) -> Result<Vec<SessionEvent>, SessionError> {
        match self {
            Self::NotStarted => Ok(vec![login]),
            _ => Err(SessionError::AlreadyStarted),
        }
    }

    /// Rotation: the current generation buys the next one. An older generation means a rotated
    /// token was replayed, so the session is revoked (the caller appends that and refuses).
    pub fn decide_refresh(&self, presented: u32) -> Result<Vec<SessionEvent>, SessionError> {
        match self {
            Self::NotStarted => Err(SessionError::NotFound),
            Self::Ended { .. } => Err(SessionError::Ended),
            Self::Active { generation, .. } if presented == *generation => {
                Ok(vec![SessionEvent::SessionRefreshed {
                    generation: generation + 1,
                }])
            }
            Self::Active { generation, .. } if presented < *generation => {
                Ok(vec![SessionEvent::SessionRevoked {
                    reason: RevocationReason::RefreshTokenReused,
                }])
            }
            Self::Active { .. } => Err(SessionError::UnknownGeneration),
        }
    }

    pub fn decide_logout(&self) -> Result<Vec<SessionEvent>, SessionError> {
        match self {
            Self::NotStarted => Err(SessionError::NotFound),
            Self::Ended { .. } => Err(SessionError::Ended),
            Self::Active { .. } => Ok(vec![SessionEvent::UserLoggedOut {}]),
        }
    }

    pub fn decide_revoke(
        &self,
        reason: RevocationReason,
    ) -> Result<Vec<SessionEvent>, SessionError> {
        match self {
            Self::NotStarted => Err(SessionError::NotFound),
            // Revoking an ended session is a no-op, so admin actions can be retried safely.
            Self::Ended { .. } => Ok(vec![]),
            Self::Active { .. } => Ok(vec![SessionEvent::SessionRevoked { reason }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OpenId;
    use uuid::Uuid;

    fn logged_in() -> SessionEvent {
        SessionEvent::UserLoggedIn {
            session_id: SessionId::from_uuid(Uuid::from_u128(1)),
            user_id: UserId::from_uuid(Uuid::from_u128(2)),
            appid: AppId::parse("wx0123456789abcdef").unwrap(),
            openid: OpenId::parse("o1").unwrap(),
            is_new_user: true,
            client_ip: None,
            device: None,
        }
    }

    fn given(events: &[SessionEvent]) -> Session {
        Session::replay(events)
    }

    #[test]
    fn a_login_starts_an_active_session_at_generation_zero() {
        let then = given(&[]).decide_start(logged_in()).unwrap();
        let state = given(&then);
        assert!(matches!(state, Session::Active { generation: 0, .. }));
        assert_eq!(
            given(&then).decide_start(logged_in()),
            Err(SessionError::AlreadyStarted)
        );
    }

    #[test]
    fn refresh_with_the_current_generation_rotates() {
        let then = given(&[logged_in()]).decide_refresh(0).unwrap();
        assert_eq!(then, vec![SessionEvent::SessionRefreshed { generation: 1 }]);
    }

    #[test]
    fn reuse_of_a_rotated_token_revokes_the_session() {
        let history = [
            logged_in(),
            SessionEvent::SessionRefreshed { generation: 1 },
        ];
        let then = given(&history).decide_refresh(0).unwrap();
        assert_eq!(
            then,
            vec![SessionEvent::SessionRevoked {
                reason: RevocationReason::RefreshTokenReused
            }]
        );
        let after = given(&[&history[..], &then[..]].concat());
        assert!(!after.is_active());
        assert_eq!(after.decide_refresh(1), Err(SessionError::Ended));
    }

    #[test]
    fn a_generation_never_issued_is_refused() {
        assert_eq!(
            given(&[logged_in()]).decide_refresh(5),
            Err(SessionError::UnknownGeneration)
        );
    }

    #[test]
    fn logout_ends_the_session_once() {
        let then = given(&[logged_in()]).decide_logout().unwrap();
        let after = given(&[logged_in(), then[0].clone()]);
        assert!(!after.is_active());
        assert_eq!(after.decide_logout(), Err(SessionError::Ended));
        assert_eq!(
            after.decide_revoke(RevocationReason::AdminAction),
            Ok(vec![])
        );
    }

    #[test]
    fn nothing_happens_to_a_session_that_never_started() {
        assert_eq!(given(&[]).decide_refresh(0), Err(SessionError::NotFound));
        assert_eq!(given(&[]).decide_logout(), Err(SessionError::NotFound));
    }
}
