//! The `Session` aggregate: one login and its refresh-token lifecycle.
//!
//! A session ends by logout or revocation (events), and also, without any event, when it
//! outlives its [`SessionLifetime`] or when its user is blocked, unblocked or erased after it
//! began (see [`Session::in_force`]).

use chrono::{DateTime, Duration, Utc};

use crate::events::{RevocationReason, SessionEvent};
use crate::ids::{AppId, SessionId, UserId};
use crate::recorded::Recorded;
use crate::user::User;

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
        /// Where and when the login was recorded.
        started: Recorded,
        /// The login or the latest refresh: the idle lifetime counts from here.
        last_active_at: DateTime<Utc>,
    },
    Ended {
        id: SessionId,
        user_id: UserId,
    },
}

/// How long a session may live: `max_age` from its login whatever happens, `idle` from its
/// latest refresh (or login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    pub max_age: Duration,
    pub idle: Duration,
}

impl Default for SessionLifetime {
    fn default() -> Self {
        Self {
            max_age: Duration::days(30),
            idle: Duration::days(7),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session does not exist")]
    NotFound,
    #[error("the session has ended")]
    Ended,
    #[error("the session has expired")]
    Expired,
    #[error("the refresh token was never issued")]
    UnknownGeneration,
    #[error("the session has already started")]
    AlreadyStarted,
}

impl Session {
    pub fn evolve(self, at: Recorded, event: &SessionEvent) -> Self {
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
                started: at,
                last_active_at: at.occurred_at,
            },
            (
                Self::Active {
                    id,
                    user_id,
                    appid,
                    is_new_user,
                    started,
                    ..
                },
                SessionEvent::SessionRefreshed { generation },
            ) => Self::Active {
                id,
                user_id,
                appid,
                generation: *generation,
                is_new_user,
                started,
                last_active_at: at.occurred_at,
            },
            (
                Self::Active { id, user_id, .. },
                SessionEvent::UserLoggedOut {} | SessionEvent::SessionRevoked { .. },
            ) => Self::Ended { id, user_id },
            // A stream only ever holds events this aggregate decided, in this order.
            (state, _) => state,
        }
    }

    pub fn replay<'a>(events: impl IntoIterator<Item = (Recorded, &'a SessionEvent)>) -> Self {
        events
            .into_iter()
            .fold(Self::default(), |state, (at, event)| {
                state.evolve(at, event)
            })
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

    /// An active session past its absolute or its idle lifetime at `now`.
    pub fn lapsed(&self, now: DateTime<Utc>, lifetime: &SessionLifetime) -> bool {
        match self {
            Self::Active {
                started,
                last_active_at,
                ..
            } => {
                now >= started.occurred_at + lifetime.max_age
                    || now >= *last_active_at + lifetime.idle
            }
            Self::NotStarted | Self::Ended { .. } => false,
        }
    }

    /// Whether the session still counts at `now`: active in its own stream, within both
    /// lifetimes, its user neither blocked nor erased, and begun after the user's last block,
    /// unblock or erasure. The last rule is what makes "unblocking revives no session" hold by
    /// construction: it compares log positions, so it needs no list of sessions (which a read
    /// model might give a few milliseconds late) and no clock.
    pub fn in_force(&self, user: &User, now: DateTime<Utc>, lifetime: &SessionLifetime) -> bool {
        match self {
            Self::Active {
                user_id, started, ..
            } => {
                user.id == Some(*user_id)
                    && user.admits_session_started_at(started.position)
                    && !self.lapsed(now, lifetime)
            }
            Self::NotStarted | Self::Ended { .. } => false,
        }
    }

    pub fn decide_start(&self, login: SessionEvent) -> Result<Vec<SessionEvent>, SessionError> {
        match self {
            Self::NotStarted => Ok(vec![login]),
            _ => Err(SessionError::AlreadyStarted),
        }
    }

    /// Rotation: the current generation buys the next one. An older generation means a rotated
    /// token was replayed, so the session is revoked (the caller appends that and refuses). A
    /// session past its lifetime rotates nothing.
    pub fn decide_refresh(
        &self,
        presented: u32,
        now: DateTime<Utc>,
        lifetime: &SessionLifetime,
    ) -> Result<Vec<SessionEvent>, SessionError> {
        match self {
            Self::NotStarted => Err(SessionError::NotFound),
            Self::Ended { .. } => Err(SessionError::Ended),
            Self::Active { .. } if self.lapsed(now, lifetime) => Err(SessionError::Expired),
            Self::Active { generation, .. } if presented == *generation => {
                Ok(vec![SessionEvent::SessionRefreshed {
                    generation: generation + 1,
                }])
            }
            Self::Active { generation, .. } if presented < *generation => {
                Ok(vec![SessionEvent::SessionRevoked {
                    reason: RevocationReason::RefreshTokenReused,
                    note: None,
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

    /// `note`: an administrator's free-text reason, if any.
    pub fn decide_revoke(
        &self,
        reason: RevocationReason,
        note: Option<String>,
    ) -> Result<Vec<SessionEvent>, SessionError> {
        match self {
            Self::NotStarted => Err(SessionError::NotFound),
            // Revoking an ended session is a no-op, so admin actions can be retried safely.
            Self::Ended { .. } => Ok(vec![]),
            Self::Active { .. } => Ok(vec![SessionEvent::SessionRevoked { reason, note }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::UserEvent;
    use crate::ids::OpenId;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn user_id() -> UserId {
        UserId::from_uuid(Uuid::from_u128(2))
    }

    fn logged_in() -> SessionEvent {
        SessionEvent::UserLoggedIn {
            session_id: SessionId::from_uuid(Uuid::from_u128(1)),
            user_id: user_id(),
            appid: AppId::parse("wx0123456789abcdef").unwrap(),
            openid: OpenId::parse("o1").unwrap(),
            is_new_user: true,
            client_ip: None,
            device: None,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    /// Recorded at log position `position`, `hours` after t0.
    fn at(position: i64, hours: i64) -> Recorded {
        Recorded {
            position,
            occurred_at: t0() + Duration::hours(hours),
        }
    }

    /// The events, recorded one position apart at t0.
    fn given(events: &[SessionEvent]) -> Session {
        Session::replay(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (at(i as i64 + 1, 0), e)),
        )
    }

    fn given_at(events: &[(Recorded, SessionEvent)]) -> Session {
        Session::replay(events.iter().map(|(at, e)| (*at, e)))
    }

    fn revoked(reason: RevocationReason) -> SessionEvent {
        SessionEvent::SessionRevoked { reason, note: None }
    }

    fn lifetime() -> SessionLifetime {
        SessionLifetime::default()
    }

    /// A registered user whose stream holds `events` at the given positions.
    fn user(events: &[(i64, UserEvent)]) -> User {
        let registered = UserEvent::UserRegistered {
            user_id: user_id(),
            appid: AppId::parse("wx0123456789abcdef").unwrap(),
            openid: OpenId::parse("o1").unwrap(),
        };
        std::iter::once((0, registered))
            .chain(events.iter().cloned())
            .fold(User::default(), |user, (position, e)| {
                user.evolve_recorded(at(position, 0), &e)
            })
    }

    fn blocked(reason: &str) -> UserEvent {
        UserEvent::UserBlocked {
            reason: reason.into(),
        }
    }

    fn unblocked(reason: &str) -> UserEvent {
        UserEvent::UserUnblocked {
            reason: reason.into(),
        }
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
        let then = given(&[logged_in()])
            .decide_refresh(0, t0(), &lifetime())
            .unwrap();
        assert_eq!(then, vec![SessionEvent::SessionRefreshed { generation: 1 }]);
    }

    #[test]
    fn reuse_of_a_rotated_token_revokes_the_session() {
        let history = [
            logged_in(),
            SessionEvent::SessionRefreshed { generation: 1 },
        ];
        let then = given(&history)
            .decide_refresh(0, t0(), &lifetime())
            .unwrap();
        assert_eq!(then, vec![revoked(RevocationReason::RefreshTokenReused)]);
        let after = given(&[&history[..], &then[..]].concat());
        assert!(!after.is_active());
        assert_eq!(
            after.decide_refresh(1, t0(), &lifetime()),
            Err(SessionError::Ended)
        );
    }

    #[test]
    fn a_generation_never_issued_is_refused() {
        assert_eq!(
            given(&[logged_in()]).decide_refresh(5, t0(), &lifetime()),
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
            after.decide_revoke(RevocationReason::AdminAction, None),
            Ok(vec![])
        );
    }

    #[test]
    fn nothing_happens_to_a_session_that_never_started() {
        assert_eq!(
            given(&[]).decide_refresh(0, t0(), &lifetime()),
            Err(SessionError::NotFound)
        );
        assert_eq!(given(&[]).decide_logout(), Err(SessionError::NotFound));
        assert_eq!(
            given(&[]).decide_revoke(RevocationReason::UserAction, None),
            Err(SessionError::NotFound)
        );
    }

    #[test]
    fn an_admin_revocation_carries_its_note() {
        let then = given(&[logged_in()])
            .decide_revoke(RevocationReason::AdminAction, Some("lost phone".into()))
            .unwrap();
        assert_eq!(
            then,
            vec![SessionEvent::SessionRevoked {
                reason: RevocationReason::AdminAction,
                note: Some("lost phone".into())
            }]
        );
        assert!(!given(&[logged_in(), then[0].clone()]).is_active());
    }

    #[test]
    fn refresh_after_the_idle_lifetime_is_refused() {
        let lifetime = SessionLifetime {
            max_age: Duration::hours(100),
            idle: Duration::hours(10),
        };
        let session = given_at(&[(at(1, 0), logged_in())]);
        let just_before = t0() + Duration::hours(10) - Duration::seconds(1);
        assert!(session.decide_refresh(0, just_before, &lifetime).is_ok());
        assert_eq!(
            session.decide_refresh(0, t0() + Duration::hours(10), &lifetime),
            Err(SessionError::Expired)
        );
        // Each refresh restarts the idle clock.
        let refreshed = given_at(&[
            (at(1, 0), logged_in()),
            (at(2, 9), SessionEvent::SessionRefreshed { generation: 1 }),
        ]);
        assert!(refreshed
            .decide_refresh(1, t0() + Duration::hours(18), &lifetime)
            .is_ok());
        assert!(refreshed.lapsed(t0() + Duration::hours(19), &lifetime));
    }

    #[test]
    fn refresh_after_the_absolute_lifetime_is_refused_however_active() {
        let lifetime = SessionLifetime {
            max_age: Duration::hours(20),
            idle: Duration::hours(10),
        };
        let busy = given_at(&[
            (at(1, 0), logged_in()),
            (at(2, 8), SessionEvent::SessionRefreshed { generation: 1 }),
            (at(3, 16), SessionEvent::SessionRefreshed { generation: 2 }),
        ]);
        assert!(busy
            .decide_refresh(2, t0() + Duration::hours(19), &lifetime)
            .is_ok());
        assert_eq!(
            busy.decide_refresh(2, t0() + Duration::hours(20), &lifetime),
            Err(SessionError::Expired)
        );
        let user = user(&[]);
        assert!(busy.in_force(&user, t0() + Duration::hours(19), &lifetime));
        assert!(!busy.in_force(&user, t0() + Duration::hours(20), &lifetime));
    }

    #[test]
    fn a_session_older_than_a_block_stays_over_after_the_unblock() {
        // The session began at position 5; the user was blocked at 7 and unblocked at 9. No
        // SessionRevoked is in its stream (as when the list of sessions missed it).
        let session = given_at(&[(at(5, 0), logged_in())]);
        assert!(session.in_force(&user(&[]), t0(), &lifetime()));
        assert!(!session.in_force(&user(&[(7, blocked("fraud"))]), t0(), &lifetime()));
        let unblocked = user(&[(7, blocked("fraud")), (9, unblocked("appeal"))]);
        assert!(!session.in_force(&unblocked, t0(), &lifetime()));
        // A login appended while the user was blocked (decided just before the block) is
        // over too; one after the unblock counts.
        let raced = given_at(&[(at(8, 0), logged_in())]);
        assert!(!raced.in_force(&unblocked, t0(), &lifetime()));
        let fresh = given_at(&[(at(10, 0), logged_in())]);
        assert!(fresh.in_force(&unblocked, t0(), &lifetime()));
    }

    #[test]
    fn no_session_of_an_erased_user_is_in_force() {
        let session = given_at(&[(at(5, 0), logged_in())]);
        assert!(!session.in_force(&user(&[(6, UserEvent::UserErased {})]), t0(), &lifetime()));
        let other = User {
            id: Some(UserId::from_uuid(Uuid::from_u128(99))),
            ..User::default()
        };
        assert!(!session.in_force(&other, t0(), &lifetime()), "another user");
    }
}
